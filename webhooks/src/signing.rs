//! Webhook signatures, compatible with Standard Webhooks verifiers.
//!
//! A secret is `whsec_` + base64 of 32 random bytes. A delivery is signed as
//! `v1,` + base64(HMAC-SHA256(key, "{delivery id}.{unix seconds}.{body}")); during a rotation
//! every active secret signs and the signatures are space-separated, so a receiver holding
//! either secret accepts the delivery.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "whsec_";
const KEY_BYTES: usize = 32;
/// How far a delivery's timestamp may be from the verifier's clock.
pub const TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("a signing secret starts with whsec_ followed by base64")]
    BadSecret,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error("no signature matches")]
    Mismatch,
    #[error("the timestamp is more than 5 minutes from now")]
    Stale,
}

/// A signing secret. Its text is shown once, at creation; `Debug` never prints it.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(redacted)")
    }
}

impl SigningSecret {
    /// A new secret from the OS CSPRNG.
    pub fn generate() -> Result<Self, SigningError> {
        let mut key = vec![0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| SigningError::Random(e.to_string()))?;
        Ok(SigningSecret { key })
    }

    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SigningError::BadSecret)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SigningError::BadSecret)?;
        if key.is_empty() {
            return Err(SigningError::BadSecret);
        }
        Ok(SigningSecret { key })
    }

    /// The `whsec_…` text, for showing once and for storing.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, delivery_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(delivery_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The signature header value: one `v1,…` per active secret, space-separated.
pub fn sign(secrets: &[SigningSecret], delivery_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                STANDARD.encode(s.mac(delivery_id, timestamp, body))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a delivery as a receiver would: the timestamp within [`TOLERANCE_SECS`] of `now` and
/// one of the header's signatures made with `secret` (compared in constant time).
pub fn verify(
    secret: &SigningSecret,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
) -> Result<(), SigningError> {
    // Checked: a timestamp of i64::MIN or MAX must be refused, not overflow.
    if now
        .checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_none_or(|skew| skew > TOLERANCE_SECS)
    {
        return Err(SigningError::Stale);
    }
    let expected = secret.mac(delivery_id, timestamp, body);
    let matched = header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .fold(false, |found, candidate| {
            found | bool::from(candidate.ct_eq(&expected))
        });
    if matched {
        Ok(())
    } else {
        Err(SigningError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's published example.
    #[test]
    fn matches_the_standard_webhooks_example() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let header = sign(
            std::slice::from_ref(&secret),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body,
                &header,
                1614265330
            ),
            Ok(())
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let old = SigningSecret::generate().unwrap();
        let new = SigningSecret::generate().unwrap();
        let header = sign(&[new.clone(), old.clone()], "d1", 100, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(verify(&old, "d1", 100, b"{}", &header, 100), Ok(()));
        assert_eq!(verify(&new, "d1", 100, b"{}", &header, 100), Ok(()));
        let other = SigningSecret::generate().unwrap();
        assert_eq!(
            verify(&other, "d1", 100, b"{}", &header, 100),
            Err(SigningError::Mismatch)
        );
    }

    #[test]
    fn timestamps_at_the_edges_of_i64_are_stale_not_a_panic() {
        let secret = SigningSecret::generate().unwrap();
        for (timestamp, now) in [(i64::MIN, 1000), (i64::MAX, -1000), (i64::MIN, i64::MAX)] {
            let header = sign(std::slice::from_ref(&secret), "d1", timestamp, b"{}");
            assert_eq!(
                verify(&secret, "d1", timestamp, b"{}", &header, now),
                Err(SigningError::Stale)
            );
        }
    }

    #[test]
    fn tampering_and_stale_timestamps_are_refused() {
        let secret = SigningSecret::generate().unwrap();
        let header = sign(std::slice::from_ref(&secret), "d1", 1000, b"{\"a\":1}");
        assert_eq!(
            verify(&secret, "d1", 1000, b"{\"a\":2}", &header, 1000),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            verify(&secret, "d2", 1000, b"{\"a\":1}", &header, 1000),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            verify(&secret, "d1", 1001, b"{\"a\":1}", &header, 1001),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            verify(
                &secret,
                "d1",
                1000,
                b"{\"a\":1}",
                &header,
                1000 + TOLERANCE_SECS + 1
            ),
            Err(SigningError::Stale)
        );
    }

    #[test]
    fn secrets_round_trip_and_never_print() {
        let secret = SigningSecret::generate().unwrap();
        let text = secret.reveal();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(&text).unwrap().key, secret.key);
        assert!(!format!("{secret:?}").contains(&text[6..]));
        for bad in ["", "whsec_", "sk_abc", "whsec_***"] {
            assert_eq!(
                SigningSecret::parse(bad).unwrap_err(),
                SigningError::BadSecret
            );
        }
    }
}
