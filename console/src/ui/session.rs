//! Console sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` unless the
//! console listens on loopback), held in memory for 12 hours and only while its admin key is
//! live; each carries a CSRF token every form posts back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub const COOKIE: &str = "gf_console";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone)]
pub struct Session {
    pub key_id: Uuid,
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    // The OS generator failing leaves no safe session to make; this is the process's end.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator");
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// A new session for `key_id`; returns its cookie value.
    pub fn start(&self, key_id: Uuid) -> String {
        let id = random();
        let session = Session {
            key_id,
            csrf: random(),
            expires: Instant::now() + LIFETIME,
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, s| s.expires > Instant::now());
        live.insert(id.clone(), session);
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The `Set-Cookie` value for a session (or, with `None`, one that removes it).
pub fn cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_and_end() {
        let sessions = Sessions::default();
        let key = Uuid::now_v7();
        let (a, b) = (sessions.start(key), sessions.start(key));
        assert_ne!(a, b);
        let session = sessions.get(&a).unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches("forged"));
        sessions.end(&a);
        assert!(sessions.get(&a).is_none());
        assert!(sessions.get(&b).is_some());
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = cookie(Some("abc"), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(!cookie(Some("abc"), false).contains("Secure"));
        assert!(cookie(None, false).contains("Max-Age=0"));
    }
}
