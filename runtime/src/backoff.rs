//! The one backoff every retry in the tree waits with: doubling waits up to a maximum, each cut
//! by a random part of itself (so retries that failed together do not retry together), and cut
//! short by a stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubling, jittered waits between retries.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

/// The share of each wait that is random, a wait being `next × (1 − JITTER × u)` with u in
/// [0, 1): half ("equal jitter"), so retries spread out, and none waits less than
/// half its turn.
const JITTER: f64 = 0.5;
/// A run this long was healthy: its failure starts the waits over ([`Backoff::after_run`]).
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The longest the next wait can be.
    pub fn current(&self) -> Duration {
        self.next
    }

    /// Starts the waits over, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Starts the waits over when the run that just failed had gone well for a minute: one
    /// failure an hour must not inherit the backoff of the last outage.
    pub fn after_run(&mut self, ran_for: Duration) {
        if ran_for > HEALTHY_RUN {
            self.reset();
        }
    }

    /// The next wait, jittered; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_at(unit_random())
    }

    fn next_delay_at(&mut self, u: f64) -> Duration {
        let delay = self.next.mul_f64(1.0 - JITTER * u.clamp(0.0, 1.0));
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Sleeps for the next wait; `false` when `stop` came first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// A number in [0, 1) from the OS generator, for jitter; 0.5 if the generator fails.
pub fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_maximum_and_start_over_on_reset() {
        // u = 0: no part of the wait is random.
        let mut b = Backoff::new(100 * MS, 500 * MS);
        let waits: Vec<_> = (0..5).map(|_| b.next_delay_at(0.0)).collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
        b.reset();
        assert_eq!(b.next_delay_at(0.0), 100 * MS);
        b.after_run(Duration::from_secs(5));
        assert_eq!(
            b.next_delay_at(0.0),
            200 * MS,
            "a short run keeps the waits growing"
        );
        b.after_run(Duration::from_secs(61));
        assert_eq!(
            b.next_delay_at(0.0),
            100 * MS,
            "a healthy run starts them over"
        );
    }

    #[test]
    fn jitter_takes_at_most_half_of_a_wait() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        assert_eq!(b.next_delay_at(0.0), 100 * MS);
        assert_eq!(b.next_delay_at(1.0), 100 * MS, "doubled, then halved");
        assert_eq!(b.current(), 400 * MS);
        for _ in 0..100 {
            let mut b = Backoff::new(100 * MS, 1000 * MS);
            let d = b.next_delay();
            assert!(d > 50 * MS && d <= 100 * MS, "{d:?}");
        }
    }

    #[test]
    fn random_numbers_are_in_the_unit_interval_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }

    #[tokio::test]
    async fn a_stop_cuts_a_wait_short() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.wait(&stop).await);
    }
}
