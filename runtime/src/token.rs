//! Ingest tokens and shared secrets.
//!
//! A token is `gft_` + a 16-hex-digit public lookup + `_` + 43 base64url characters of secret
//! (32 bytes, 256 bits, from the OS CSPRNG). The lookup finds the connection row; only the
//! secret's scrypt hash is stored, as a PHC string that records its parameters, so the cost can be
//! raised later without invalidating existing hashes. Shared secrets (the optional
//! `x-greenflash-secret` header) are hashed the same way.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scrypt::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use scrypt::{Params, Scrypt};

use gf_schemas::Provider;

pub const TOKEN_PREFIX: &str = "gft_";
const LOOKUP_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const LOOKUP_CHARS: usize = LOOKUP_BYTES * 2;
const SECRET_CHARS: usize = 43;
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + LOOKUP_CHARS + 1 + SECRET_CHARS;

pub const SHARED_SECRET_MIN_CHARS: usize = 8;
pub const SHARED_SECRET_MAX_CHARS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a gf ingest token")]
    Malformed,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error(
        "the shared secret must be {SHARED_SECRET_MIN_CHARS} to {SHARED_SECRET_MAX_CHARS} characters long"
    )]
    SecretLength,
    #[error(
        "the shared secret must be printable ASCII (it travels in the x-greenflash-secret header) without leading or trailing spaces"
    )]
    SecretCharacters,
    #[error("stored hash is not a valid scrypt PHC string")]
    BadHash,
    #[error("invalid scrypt parameters: log2(N) = {0}")]
    BadParams(u8),
}

/// A parsed or freshly generated ingest token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestToken {
    lookup: String,
    secret: String,
}

/// A fresh public lookup (16 hex digits) and secret (43 base64url characters, 32 bytes from the
/// OS CSPRNG): the shape of ingest tokens and admin keys.
pub fn random_lookup_and_secret() -> Result<(String, String), TokenError> {
    let mut bytes = [0u8; LOOKUP_BYTES + SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let lookup = bytes[..LOOKUP_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((lookup, URL_SAFE_NO_PAD.encode(&bytes[LOOKUP_BYTES..])))
}

/// `<prefix><lookup>_<secret>` split into lookup and secret; `None` for any other shape. Cheap and
/// allocation-free: it runs on every request before any lookup.
pub fn split_lookup_and_secret<'a>(text: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = text.strip_prefix(prefix)?;
    if rest.len() != LOOKUP_CHARS + 1 + SECRET_CHARS || !rest.is_ascii() {
        return None;
    }
    let (lookup, rest) = rest.split_at(LOOKUP_CHARS);
    let secret = rest.strip_prefix('_')?;
    let lookup_ok = lookup
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = URL_SAFE_NO_PAD
        .decode(secret)
        .is_ok_and(|bytes| bytes.len() == SECRET_BYTES);
    (lookup_ok && secret_ok).then_some((lookup, secret))
}

impl IngestToken {
    pub fn generate() -> Result<Self, TokenError> {
        let (lookup, secret) = random_lookup_and_secret()?;
        Ok(IngestToken { lookup, secret })
    }

    /// Parses the token segment of an ingest URL.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let (lookup, secret) =
            split_lookup_and_secret(text, TOKEN_PREFIX).ok_or(TokenError::Malformed)?;
        Ok(IngestToken {
            lookup: lookup.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The public part that finds the connection.
    pub fn lookup(&self) -> &str {
        &self.lookup
    }

    /// The secret part, to hash or verify. Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, for the ingest URL shown once.
    pub fn reveal(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.lookup, self.secret)
    }
}

impl fmt::Debug for IngestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IngestToken({TOKEN_PREFIX}{}_…)", self.lookup)
    }
}

/// `{public_url}/ingest/{provider}/{token}`.
pub fn ingest_url(public_url: &str, provider: Provider, token: &IngestToken) -> String {
    format!(
        "{}/ingest/{}/{}",
        public_url.trim_end_matches('/'),
        provider.as_str(),
        token.reveal()
    )
}

/// Checks a shared secret chosen by a user before it is hashed.
pub fn validate_shared_secret(secret: &str) -> Result<(), TokenError> {
    let chars = secret.chars().count();
    if !(SHARED_SECRET_MIN_CHARS..=SHARED_SECRET_MAX_CHARS).contains(&chars) {
        return Err(TokenError::SecretLength);
    }
    // Printable ASCII has one blank, the space.
    if !secret.bytes().all(|b| (0x20..0x7f).contains(&b))
        || secret.starts_with(' ')
        || secret.ends_with(' ')
    {
        return Err(TokenError::SecretCharacters);
    }
    Ok(())
}

/// scrypt with chosen cost for new hashes; verification reads the cost from each hash.
#[derive(Clone, Copy, Debug)]
pub struct SecretHasher {
    params: Params,
}

impl SecretHasher {
    /// `log_n` is log2 of scrypt's N (memory = 128 · 8 · 2^log_n bytes with r = 8).
    pub fn new(log_n: u8) -> Result<Self, TokenError> {
        let params = Params::new(log_n, 8, 1, 32).map_err(|_| TokenError::BadParams(log_n))?;
        Ok(SecretHasher { params })
    }

    /// CPU- and memory-heavy by design: call it off the async threads.
    pub fn hash(&self, secret: &str) -> Result<String, TokenError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| TokenError::Random(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|_| TokenError::BadHash)?;
        Scrypt
            .hash_password_customized(secret.as_bytes(), None, None, self.params, &salt)
            .map(|h| h.to_string())
            .map_err(|_| TokenError::BadHash)
    }
}

/// Checks `secret` against a stored PHC hash; the final comparison is constant-time.
/// CPU- and memory-heavy by design: call it off the async threads.
pub fn verify_hash(phc: &str, secret: &str) -> Result<bool, TokenError> {
    let parsed = PasswordHash::new(phc).map_err(|_| TokenError::BadHash)?;
    // A stored hash is data: one with an absurd cost (a row written by hand, a bad migration)
    // must be refused, not computed for minutes with gigabytes of memory.
    let params = scrypt::Params::try_from(&parsed).map_err(|_| TokenError::BadHash)?;
    if params.log_n() > MAX_LOG_N || params.r() > MAX_R || params.p() > MAX_P {
        return Err(TokenError::BadHash);
    }
    Ok(Scrypt.verify_password(secret.as_bytes(), &parsed).is_ok())
}

/// The costliest scrypt parameters a stored hash may have (log2 N as `GF_SCRYPT_LOG_N` allows
/// at most; r and p as hashes are made, with room).
const MAX_LOG_N: u8 = 22;
const MAX_R: u32 = 16;
const MAX_P: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hashes_with_an_absurd_cost_are_refused_unrun() {
        let good = SecretHasher::new(10).unwrap().hash("s").unwrap();
        assert!(verify_hash(&good, "s").unwrap());
        // Same salt and hash, cost raised by hand: refused at once.
        for (from, to) in [("ln=10", "ln=40"), (",r=8", ",r=4096"), (",p=1", ",p=64")] {
            assert!(good.contains(from), "{good}");
            let absurd = good.replacen(from, to, 1);
            let started = std::time::Instant::now();
            assert!(
                matches!(verify_hash(&absurd, "s"), Err(TokenError::BadHash)),
                "{absurd}"
            );
            assert!(started.elapsed() < std::time::Duration::from_millis(100));
        }
    }

    #[test]
    fn generated_tokens_parse_back() {
        let token = IngestToken::generate().unwrap();
        let text = token.reveal();
        assert_eq!(text.len(), TOKEN_CHARS);
        assert_eq!(IngestToken::parse(&text).unwrap(), token);
        assert_ne!(IngestToken::generate().unwrap(), token);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = IngestToken::generate().unwrap().reveal();
        let cases = [
            String::new(),
            "gft_".into(),
            good[..good.len() - 1].into(),
            format!("{good}A"),
            good.replacen("gft_", "gfx_", 1),
            // uppercase hex in the lookup
            format!("gft_ABCDEF0123456789_{}", &good[TOKEN_PREFIX.len() + 17..]),
            // separator missing
            good.replacen('_', "-", 2).replacen("gft-", "gft_", 1),
            // a non-ASCII character of the same byte length
            format!("{}é", &good[..good.len() - 2]),
            // 43 base64 characters whose last one carries stray bits
            format!(
                "{}_{}",
                &good[..TOKEN_PREFIX.len() + 16],
                "A".repeat(42) + "B"
            ),
        ];
        for case in cases {
            assert_eq!(
                IngestToken::parse(&case),
                Err(TokenError::Malformed),
                "{case:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = IngestToken::generate().unwrap();
        let shown = format!("{token:?}");
        assert!(shown.contains(token.lookup()));
        assert!(!shown.contains(token.secret()));
    }

    #[test]
    fn urls_have_the_documented_shape() {
        let token = IngestToken::generate().unwrap();
        let url = ingest_url("https://in.example.com/", Provider::Segment, &token);
        assert_eq!(
            url,
            format!("https://in.example.com/ingest/segment/{}", token.reveal())
        );
    }

    #[test]
    fn shared_secret_rules() {
        assert_eq!(
            validate_shared_secret("short"),
            Err(TokenError::SecretLength)
        );
        assert_eq!(
            validate_shared_secret("1234567"),
            Err(TokenError::SecretLength)
        );
        assert_eq!(
            validate_shared_secret(&"x".repeat(257)),
            Err(TokenError::SecretLength)
        );
        assert_eq!(
            validate_shared_secret(" padded secret"),
            Err(TokenError::SecretCharacters)
        );
        assert_eq!(
            validate_shared_secret("tab\tinside!"),
            Err(TokenError::SecretCharacters)
        );
        assert_eq!(
            validate_shared_secret("naïve-secret"),
            Err(TokenError::SecretCharacters)
        );
        assert_eq!(validate_shared_secret("12345678"), Ok(()));
        assert_eq!(validate_shared_secret("a secret with spaces"), Ok(()));
    }

    #[test]
    fn hashes_are_phc_with_parameters_and_verify() {
        let hasher = SecretHasher::new(10).unwrap();
        let hash = hasher.hash("correct horse").unwrap();
        assert!(hash.starts_with("$scrypt$ln=10,r=8,p=1$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert_eq!(verify_hash(&hash, "correct horse"), Ok(true));
        assert_eq!(verify_hash(&hash, "correct horsf"), Ok(false));
        // Salted: the same secret hashes differently each time.
        assert_ne!(hasher.hash("correct horse").unwrap(), hash);
        // A hash made with other parameters still verifies (cost can be raised later).
        let stronger = SecretHasher::new(11)
            .unwrap()
            .hash("correct horse")
            .unwrap();
        assert_eq!(verify_hash(&stronger, "correct horse"), Ok(true));
        assert_eq!(
            verify_hash("plaintext", "plaintext"),
            Err(TokenError::BadHash)
        );
    }
}
