//! One attempt: sign, POST, read a bounded part of the answer, and say what happened.

use std::error::Error as StdError;
use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use crate::endpoints::{check_addresses, signing_secrets};
use crate::schedule::{self, Outcome};
use crate::signing::sign;
use crate::ssrf::AddressPolicy;

use super::client::BlockedAddress;
use super::{AttemptLog, Claimed, MAX_LOGGED_BODY};

/// Sends one attempt and reports what happened (never fails: failures are outcomes). The
/// attempt is a span in the trace of what fired the event, and sends its `traceparent`.
pub async fn attempt(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    claimed: &Claimed,
) -> AttemptLog {
    let span = tracing::info_span!(
        "gf.notifier.deliver",
        delivery_id = %claimed.id,
        endpoint_id = %claimed.endpoint_id,
        attempt = claimed.attempt,
        http.response.status_code = tracing::field::Empty,
    );
    let parent = claimed.traceparent.as_deref();
    let traceparent = gf_runtime::telemetry::continue_trace(&span, parent);
    let log = send(client, policy, claimed, traceparent)
        .instrument(span.clone())
        .await;
    if let Some(code) = log.status_code {
        span.record("http.response.status_code", code);
    }
    log
}

async fn send(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    claimed: &Claimed,
    traceparent: Option<String>,
) -> AttemptLog {
    let started_at = Utc::now();
    let started = Instant::now();
    let failed = |class: &'static str, error: String| AttemptLog {
        started_at,
        latency: started.elapsed(),
        status_code: None,
        error_class: Some(class),
        error: Some(error),
        response_headers: Vec::new(),
        response_body: None,
        outcome: Outcome::NoResponse,
    };
    let url = match reqwest::Url::parse(&claimed.url) {
        Ok(url) => url,
        Err(e) => return failed("bad_url", e.to_string()),
    };
    // What the guarded resolver cannot see: IP-literal hosts, and where plain http may go.
    if let Err(refused) = check_addresses(&url, policy, url.scheme() == "http").await {
        return failed("blocked_address", refused.to_string());
    }
    let secrets = match signing_secrets(
        &claimed.secret,
        claimed.previous_secret.as_deref(),
        claimed.previous_secret_expires_at,
        started_at,
    ) {
        Ok(secrets) => secrets,
        Err(e) => return failed("bad_secret", e.to_string()),
    };
    // A `Value` always encodes (string keys, finite numbers): the body is never empty.
    let body = claimed.payload.to_string().into_bytes();
    let delivery = claimed.id.to_string();
    let timestamp = started_at.timestamp();
    let signature = sign(&secrets, &delivery, timestamp, &body);
    let mut request = client.post(url);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let sent = request
        .header("content-type", "application/json")
        .header("X-Greenflash-Delivery", &delivery)
        .header("X-Greenflash-Timestamp", timestamp.to_string())
        .header("X-Greenflash-Signature", &signature)
        .header("webhook-id", &delivery)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", &signature)
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            let class = if source_is::<BlockedAddress>(&e) {
                "blocked_address"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "request"
            };
            return failed(class, error_chain(&e));
        }
    };
    let code = response.status().as_u16();
    let response_headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| schedule::parse_retry_after(v, Utc::now()));
    let mut logged = Vec::new();
    let mut read_error = None;
    while logged.len() < MAX_LOGGED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => logged.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                read_error = Some(error_chain(&e));
                break;
            }
        }
    }
    logged.truncate(MAX_LOGGED_BODY);
    let success = (200..300).contains(&code);
    AttemptLog {
        started_at,
        latency: started.elapsed(),
        status_code: Some(code),
        error_class: (!success).then_some("http_status"),
        error: read_error,
        response_headers,
        response_body: Some(storable_text(&logged)),
        outcome: if success {
            Outcome::Delivered
        } else {
            Outcome::Status { code, retry_after }
        },
    }
}

fn source_is<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// An error and its causes on one line (reqwest's own message says little).
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        parts.push(e.to_string());
        current = e.source();
    }
    storable_text(parts.join(": ").as_bytes())
}

/// Any bytes an endpoint answers with (NUL, invalid UTF-8, binary, gzip) as text PostgreSQL
/// stores: invalid UTF-8 and NUL become U+FFFD.
pub fn storable_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_answer_body_becomes_storable_text() {
        let table: [(&[u8], &str); 5] = [
            (b"thanks", "thanks"),
            (b"ok\0done", "ok\u{fffd}done"),
            (b"\xff\xfe", "\u{fffd}\u{fffd}"),
            (b"\x1f\x8b\x08\0\0", "\u{1f}\u{fffd}\u{8}\u{fffd}\u{fffd}"),
            ("héllo".as_bytes(), "héllo"),
        ];
        for (bytes, text) in table {
            let stored = storable_text(bytes);
            assert_eq!(stored, text, "{bytes:?}");
            assert!(!stored.contains('\0'));
        }
    }
}
