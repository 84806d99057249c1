//! Restart delays: exponential backoff with a cap and a bounded jitter, and
//! the small deterministic random source that feeds the jitter (seeded, so
//! the decision machine stays a pure function of its inputs).

use std::time::Duration;

use super::spec::Backoff;

/// The largest jitter, as a fraction of the delay: ±10 %.
pub(crate) const JITTER: f64 = 0.10;

/// The delay before the `restart`-th restart of a streak (1 for the first),
/// before jitter: `initial × 2^(restart-1)`, capped at `max`.
pub(crate) fn base_delay(backoff: &Backoff, restart: u32) -> Duration {
    if backoff.initial.is_zero() {
        return Duration::ZERO;
    }
    let doublings = restart.saturating_sub(1).min(63);
    let factor = 1u64 << doublings;
    let nanos = backoff
        .initial
        .as_nanos()
        .saturating_mul(u128::from(factor));
    let max = backoff.max.as_nanos();
    Duration::from_nanos(nanos.min(max).min(u128::from(u64::MAX)) as u64)
}

/// `base` moved by `unit × JITTER`, where `unit` is in [-1, 1].
pub(crate) fn with_jitter(base: Duration, unit: f64) -> Duration {
    let unit = unit.clamp(-1.0, 1.0);
    base.mul_f64(1.0 + unit * JITTER)
}

/// splitmix64: tiny, fast, and good enough to spread restarts apart. Not
/// for anything that needs unpredictability.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new(seed: u64) -> Jitter {
        Jitter { state: seed }
    }

    /// A seed from the clock and the pid, for trees not seeded by the user.
    pub(crate) fn seed_from_environment() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [-1, 1].
    pub(crate) fn next_unit(&mut self) -> f64 {
        // 53 random bits as a fraction in [0, 1], then mapped to [-1, 1].
        let fraction = (self.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64;
        fraction * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_from_initial_up_to_max() {
        let b = Backoff::default();
        let delays: Vec<_> = (1..=11).map(|n| base_delay(&b, n)).collect();
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(12800),
                ms(25600),
                ms(30000),
                ms(30000)
            ]
        );
        // Restart 0 is treated as the first; huge counts do not overflow.
        assert_eq!(base_delay(&b, 0), ms(100));
        assert_eq!(base_delay(&b, u32::MAX), ms(30000));
    }

    #[test]
    fn zero_initial_means_no_delay() {
        assert_eq!(base_delay(&Backoff::NONE, 5), Duration::ZERO);
        let b = Backoff {
            initial: Duration::ZERO,
            max: ms(500),
            ..Backoff::default()
        };
        assert_eq!(base_delay(&b, 3), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        assert_eq!(with_jitter(ms(1000), 1.0), ms(1100));
        assert_eq!(with_jitter(ms(1000), -1.0), ms(900));
        assert_eq!(with_jitter(ms(1000), 0.0), ms(1000));
        assert_eq!(with_jitter(ms(1000), 7.0), ms(1100));
        assert_eq!(with_jitter(ms(1000), -7.0), ms(900));
        assert_eq!(with_jitter(ms(1000), 0.5), ms(1050));
    }

    #[test]
    fn environment_seeds_differ_from_call_to_call() {
        let first = Jitter::seed_from_environment();
        // The clock moves on: a bounded number of tries finds a new seed.
        assert!((0..1_000_000).any(|_| Jitter::seed_from_environment() != first));
        assert!(first > 1);
    }

    #[test]
    fn the_random_source_is_splitmix64() {
        // The reference sequence of splitmix64 from state 0.
        let mut j = Jitter::new(0);
        assert_eq!(j.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(j.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(j.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn the_random_source_covers_the_unit_interval_and_is_seeded() {
        let mut a = Jitter::new(7);
        let mut b = Jitter::new(7);
        let xs: Vec<f64> = (0..2000).map(|_| a.next_unit()).collect();
        let ys: Vec<f64> = (0..2000).map(|_| b.next_unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(xs.iter().any(|&x| x < -0.9) && xs.iter().any(|&x| x > 0.9));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert_ne!(Jitter::new(8).next_unit(), Jitter::new(7).next_unit());
    }
}
