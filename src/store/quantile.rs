//! Quantiles as dsari's exporter computes them: for quantile q of n sorted values,
//! k = (n − 1)·q, and the value is the one at rank k or the linear interpolation between
//! ranks ⌊k⌋ and ⌊k⌋ + 1.

/// Picks quantiles out of `n` sorted values streaming past, keeping only the values at
/// the ranks it needs. For quantile q, k = (n − 1)·q; the value is the one at rank k, or
/// the linear interpolation between ranks ⌊k⌋ and ⌊k⌋ + 1 (as dsari's exporter does).
pub(super) struct RankPicker {
    /// Per quantile: q, k, the value at ⌊k⌋ and the one at ⌊k⌋ + 1.
    wanted: Vec<(f64, f64, Option<f64>, Option<f64>)>,
    rank: u64,
}

impl RankPicker {
    pub(super) fn new(quantiles: &[f64], n: u64) -> RankPicker {
        let last = n.saturating_sub(1) as f64;
        RankPicker {
            wanted: quantiles
                .iter()
                .map(|&q| (q, last * q, None, None))
                .collect(),
            rank: 0,
        }
    }

    pub(super) fn push(&mut self, x: f64) {
        let rank = self.rank as f64;
        for (_, k, low, high) in &mut self.wanted {
            let floor = k.floor();
            if rank == floor {
                *low = Some(x);
            } else if rank == floor + 1.0 {
                *high = Some(x);
            }
        }
        self.rank += 1;
    }

    pub(super) fn finish(self) -> Vec<(f64, f64)> {
        self.wanted
            .into_iter()
            .filter_map(|(q, k, low, high)| {
                let low = low?;
                let fraction = k - k.floor();
                Some(match high {
                    Some(high) if fraction > 0.0 => (q, low * (1.0 - fraction) + high * fraction),
                    _ => (q, low),
                })
            })
            .collect()
    }
}

/// Quantile q of sorted `values`, by the same rule as [`RankPicker`].
pub(super) fn quantile_of_sorted(values: &[f64], q: f64) -> f64 {
    let mut picker = RankPicker::new(&[q], values.len() as u64);
    for &x in values {
        picker.push(x);
    }
    picker.finish().first().map_or(f64::NAN, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_neighbouring_ranks() {
        let values = [1.0, 2.0, 3.0, 10.0];
        assert_eq!(quantile_of_sorted(&values, 0.0), 1.0);
        assert!((quantile_of_sorted(&values, 0.5) - 2.5).abs() < 1e-12);
        assert!((quantile_of_sorted(&values, 0.9) - 7.9).abs() < 1e-12);
        assert_eq!(quantile_of_sorted(&values, 1.0), 10.0);
        assert!(quantile_of_sorted(&[], 0.5).is_nan());
    }
}
