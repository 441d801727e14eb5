//! When a delivery is tried again, and when an endpoint is given up on. Pure: the caller passes
//! the time, the attempt's outcome and a random number for the jitter.
//!
//! Attempts after the first wait 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (about 28 hours in
//! all), each ±20 % so that endpoints recovering from an outage are not hit in lockstep. A `429`
//! or `503` with `Retry-After` waits what it asks, between 5 s and 10 h. `410 Gone` disables the
//! endpoint at once; an endpoint that has failed without a success for 5 days is disabled too.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Waits before the 2nd, 3rd, ... attempt, by default (`GF_WEBHOOK_RETRY_DELAYS` replaces them).
pub const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// The most attempts one delivery gets with the default schedule.
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS.len() as u32 + 1;
const JITTER: f64 = 0.2;
const RETRY_AFTER_MIN: Duration = Duration::from_secs(5);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(10 * 3600);
/// Failing without a success for this long disables an endpoint.
pub const DISABLE_AFTER: chrono::Duration = chrono::Duration::days(5);

/// How one attempt ended; its name is the metrics' `outcome` label (a small fixed set, whatever
/// the status code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Any 2xx.
    Delivered,
    /// An HTTP answer that is not 2xx, with `Retry-After` when it had one.
    #[strum(serialize = "http_error")]
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: refused, reset, timed out, blocked address.
    NoResponse,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryAt(DateTime<Utc>),
    /// Out of attempts: the delivery failed (`gf deliveries retry` can start it again).
    GiveUp,
    /// `410 Gone`: stop and disable the endpoint.
    DisableEndpoint,
}

/// The next step after attempt number `attempt` (1-based) ended with `outcome` at `now`, on the
/// schedule `delays`; `random` in [0, 1) picks the jitter.
pub fn next(
    delays: &[Duration],
    attempt: u32,
    outcome: Outcome,
    now: DateTime<Utc>,
    random: f64,
) -> Next {
    let requested = match outcome {
        Outcome::Delivered => return Next::Done,
        Outcome::Status { code: 410, .. } => return Next::DisableEndpoint,
        Outcome::Status {
            code: 429 | 503,
            retry_after,
        } => retry_after.map(|d| d.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)),
        _ => None,
    };
    let Some(base) = delays.get(attempt.saturating_sub(1) as usize) else {
        return Next::GiveUp;
    };
    let delay = requested.unwrap_or_else(|| {
        let factor = 1.0 + JITTER * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor)
    });
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(10));
    Next::RetryAt(now + delay)
}

/// `Retry-After` in seconds or as an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Whether an endpoint failing since `failing_since` (no success after it) is to be disabled.
pub fn should_disable(failing_since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    failing_since.is_some_and(|since| now - since >= DISABLE_AFTER)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 18, 12, 0, 0).unwrap()
    }

    fn wait(next: Next) -> Duration {
        match next {
            Next::RetryAt(at) => (at - t0()).to_std().unwrap(),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn failures_follow_the_schedule_then_give_up() {
        let failure = Outcome::Status {
            code: 500,
            retry_after: None,
        };
        for (attempt, expected) in (1..).zip(RETRY_DELAYS) {
            // The middle of the jitter range is the schedule itself.
            assert_eq!(
                wait(next(&RETRY_DELAYS, attempt, failure, t0(), 0.5)),
                expected,
                "attempt {attempt}"
            );
            let low = wait(next(&RETRY_DELAYS, attempt, failure, t0(), 0.0));
            let high = wait(next(&RETRY_DELAYS, attempt, failure, t0(), 0.999_999));
            assert_eq!(low, expected.mul_f64(0.8));
            assert!(high > expected.mul_f64(1.19) && high <= expected.mul_f64(1.2));
        }
        assert_eq!(
            next(&RETRY_DELAYS, MAX_ATTEMPTS, failure, t0(), 0.5),
            Next::GiveUp
        );
        assert_eq!(
            next(&RETRY_DELAYS, MAX_ATTEMPTS, Outcome::NoResponse, t0(), 0.5),
            Next::GiveUp
        );
        let total: Duration = RETRY_DELAYS.iter().sum();
        assert!(total > Duration::from_secs(24 * 3600) && total < Duration::from_secs(30 * 3600));
    }

    #[test]
    fn success_gone_and_retry_after() {
        assert_eq!(
            next(&RETRY_DELAYS, 1, Outcome::Delivered, t0(), 0.5),
            Next::Done
        );
        let gone = Outcome::Status {
            code: 410,
            retry_after: None,
        };
        assert_eq!(
            next(&RETRY_DELAYS, 3, gone, t0(), 0.5),
            Next::DisableEndpoint
        );
        let asks = |code, secs| Outcome::Status {
            code,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            wait(next(&RETRY_DELAYS, 1, asks(429, 120), t0(), 0.5)),
            Duration::from_secs(120)
        );
        assert_eq!(
            wait(next(&RETRY_DELAYS, 1, asks(503, 0), t0(), 0.5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            wait(next(&RETRY_DELAYS, 1, asks(503, 86_400 * 7), t0(), 0.5)),
            Duration::from_secs(36_000)
        );
        // Retry-After on other codes is not a promise we keep.
        assert_eq!(
            wait(next(&RETRY_DELAYS, 1, asks(500, 120), t0(), 0.5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn retry_after_is_read_in_both_forms() {
        assert_eq!(
            parse_retry_after(" 30 ", t0()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 18 May 2026 12:01:00 GMT", t0()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Mon, 18 May 2026 11:00:00 GMT", t0()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", t0()), None);
    }

    #[test]
    fn endpoints_failing_for_five_days_are_disabled() {
        let now = t0();
        assert!(!should_disable(None, now));
        assert!(!should_disable(Some(now - chrono::Duration::days(4)), now));
        assert!(should_disable(Some(now - chrono::Duration::days(5)), now));
    }
}
