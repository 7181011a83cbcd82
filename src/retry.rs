//! The pause before a chain retry: `floor(1.14^k * U)` seconds, with `U` a uniform whole
//! number of seconds in `sleep_time ..= sleep_time + retry_jitter` (the contract, section 4).
//!
//! The jitter spreads out thousands of machines that failed together (a mirror was down);
//! the growth factor backs off a persistent failure gently. Pure, so tests can seed it.

use std::time::Duration;

use rand::Rng;

/// Growth of the pause per chain attempt.
const GROWTH: f64 = 1.14;

/// The pause after chain attempt `k` (1-based) failed.
pub(crate) fn delay(
    k: u32,
    sleep_time: Duration,
    retry_jitter: Duration,
    rng: &mut impl Rng,
) -> Duration {
    let low = sleep_time.as_secs();
    let high = low.saturating_add(retry_jitter.as_secs());
    let u = rng.gen_range(low..=high);
    let secs = (GROWTH.powi(k.min(1000) as i32) * u as f64).floor();
    Duration::from_secs_f64(secs.min(u32::MAX as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn zero_settings_mean_no_pause() {
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(
            delay(1, Duration::ZERO, Duration::ZERO, &mut rng),
            Duration::ZERO
        );
    }

    #[test]
    fn without_jitter_the_pause_is_exact() {
        let mut rng = StdRng::seed_from_u64(7);
        // floor(1.14 * 10) = 11, floor(1.14^2 * 10) = floor(12.996) = 12, 1.14^5*10 = 19.25
        assert_eq!(
            delay(1, Duration::from_secs(10), Duration::ZERO, &mut rng).as_secs(),
            11
        );
        assert_eq!(
            delay(2, Duration::from_secs(10), Duration::ZERO, &mut rng).as_secs(),
            12
        );
        assert_eq!(
            delay(5, Duration::from_secs(10), Duration::ZERO, &mut rng).as_secs(),
            19
        );
    }

    #[test]
    fn jitter_stays_in_bounds_and_varies() {
        let mut rng = StdRng::seed_from_u64(42);
        let (sleep, jitter) = (Duration::from_secs(1), Duration::from_secs(30));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let d = delay(3, sleep, jitter, &mut rng).as_secs_f64();
            let bound = 1.14f64.powi(3);
            assert!(
                d >= (bound * 1.0).floor() && d <= (bound * 31.0).floor(),
                "{d}"
            );
            assert_eq!(d.fract(), 0.0);
            seen.insert(d as u64);
        }
        assert!(seen.len() > 20, "jitter should spread the pauses: {seen:?}");
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let mut rng = StdRng::seed_from_u64(1);
        let d = delay(
            u32::MAX,
            Duration::from_secs(u64::MAX / 2),
            Duration::from_secs(u64::MAX),
            &mut rng,
        );
        assert!(d <= Duration::from_secs(u32::MAX as u64));
    }
}
