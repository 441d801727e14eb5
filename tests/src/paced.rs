//! The verdict of a paced load run (`gf/benches/e2e.rs`): did the pipeline hold the offered rate
//! with its lag bounded? Kept here, apart from the bench binary, so its rule is unit-tested.

/// What a paced run measured.
#[derive(Clone, Debug)]
pub struct PacedRun<'a> {
    /// Events per second the load offered and what went in (acknowledged / seconds).
    pub offered: f64,
    pub achieved: f64,
    pub seconds: f64,
    /// Every acknowledged event was stored exactly once.
    pub exactly_once: bool,
    /// How long the backlog took to drain after the load stopped.
    pub drain_seconds: f64,
    /// (seconds since the start, total consumer lag) samples taken during the load.
    pub lag: &'a [(f64, f64)],
}

/// The least share of the offered rate a held run takes in.
pub const MIN_SHARE_OF_OFFERED: f64 = 0.97;

/// The most a held run's backlog may take to drain once the load stops.
pub const MAX_DRAIN_SECONDS: f64 = 5.0;

impl PacedRun<'_> {
    /// The load went in at the offered rate (an overloaded receiver answers more slowly, so less
    /// goes in), everything was stored once, the lag's trend over the load grew by less than one
    /// second of load (a least-squares fit: single samples swing by a few attributor batches),
    /// and the backlog left at the end drained within [`MAX_DRAIN_SECONDS`].
    pub fn held(&self) -> bool {
        self.achieved >= MIN_SHARE_OF_OFFERED * self.offered
            && self.exactly_once
            && self.lag_growth() <= self.offered
            && self.drain_seconds <= MAX_DRAIN_SECONDS
    }

    /// The lag's least-squares trend over the load, in records (0 with fewer than two samples).
    pub fn lag_growth(&self) -> f64 {
        let n = self.lag.len() as f64;
        if self.lag.len() < 2 {
            return 0.0;
        }
        let (mean_t, mean_lag) = self
            .lag
            .iter()
            .fold((0.0, 0.0), |(t, l), (st, sl)| (t + st / n, l + sl / n));
        let (covariance, variance) = self.lag.iter().fold((0.0, 0.0), |(c, v), (t, lag)| {
            (
                c + (t - mean_t) * (lag - mean_lag),
                v + (t - mean_t).powi(2),
            )
        });
        if variance == 0.0 {
            0.0
        } else {
            covariance / variance * self.seconds
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 5 s over 60 s.
    fn every_5s(lag: &[f64]) -> Vec<(f64, f64)> {
        lag.iter()
            .enumerate()
            .map(|(i, l)| (5.0 * (i + 1) as f64, *l))
            .collect()
    }

    fn run(offered: f64, lag: &[(f64, f64)]) -> PacedRun<'_> {
        PacedRun {
            offered,
            achieved: offered,
            seconds: 60.0,
            exactly_once: true,
            drain_seconds: 1.0,
            lag,
        }
    }

    // Lag samples from real runs on the 2-core machine (BENCHMARKS.md).
    const SWINGING: [f64; 12] = [
        10419.0, 7900.0, 4500.0, 3321.0, 13300.0, 10426.0, 7922.0, 10728.0, 12005.0, 7800.0,
        11808.0, 13601.0,
    ];
    const GROWING: [f64; 12] = [
        16403.0, 14603.0, 19980.0, 30404.0, 50879.0, 60609.0, 71102.0, 68872.0, 82903.0, 85479.0,
        84833.0, 80579.0,
    ];

    #[test]
    fn a_lag_that_swings_without_growing_holds() {
        let lag = every_5s(&SWINGING);
        let r = run(11_900.0, &lag);
        assert!(
            (r.lag_growth() - 5_300.0).abs() < 100.0,
            "{}",
            r.lag_growth()
        );
        assert!(r.held());
    }

    #[test]
    fn a_lag_that_grows_through_the_load_does_not_hold() {
        let lag = every_5s(&GROWING);
        let r = run(12_900.0, &lag);
        assert!(
            (r.lag_growth() - 89_100.0).abs() < 100.0,
            "{}",
            r.lag_growth()
        );
        assert!(!r.held());
    }

    #[test]
    fn each_other_condition_alone_fails_a_run() {
        let lag = every_5s(&SWINGING);
        let base = run(11_900.0, &lag);
        assert!(base.held());
        let slow_intake = PacedRun {
            achieved: 0.9 * base.offered,
            ..base.clone()
        };
        let lost = PacedRun {
            exactly_once: false,
            ..base.clone()
        };
        let backlog = PacedRun {
            drain_seconds: MAX_DRAIN_SECONDS + 0.5,
            ..base.clone()
        };
        for r in [slow_intake, lost, backlog] {
            assert!(!r.held(), "{r:?}");
        }
    }

    #[test]
    fn too_few_samples_have_no_trend() {
        assert_eq!(run(1.0, &[]).lag_growth(), 0.0);
        assert_eq!(run(1.0, &[(5.0, 900.0)]).lag_growth(), 0.0);
        assert_eq!(run(1.0, &[(5.0, 1.0), (5.0, 9.0)]).lag_growth(), 0.0);
    }
}
