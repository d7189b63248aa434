//! One member's predictive distribution of one feature's next value (z
//! units): with probability `stay` the value is exactly what it is now,
//! otherwise it is drawn from N(`mean`, `sigma`). ICU-Sepsis patients move
//! between discrete states, so "no change at all" happens in 36-82% of
//! transitions per feature; one Gaussian put its mean between staying and
//! jumping and lost to persistence (docs/world-model.md).
//!
//! The ensemble's distribution is the equal-weight mixture of its members'.
//! Point forecasts for absolute error use its median, the value that
//! minimises expected absolute error; calibration uses the randomised PIT,
//! which is uniform for a calibrated forecast even with a point mass.

/// One member's forecast of one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Component {
    /// Probability that the value stays as it is (0 when it is missing now).
    pub stay: f64,
    pub mean: f64,
    pub sigma: f64,
}

impl Component {
    /// `stay_logit` is ignored when the current value is missing: a missing
    /// value cannot stay.
    pub fn new(current: Option<f64>, stay_logit: f64, mean: f64, log_sigma: f64) -> Self {
        let stay = if current.is_some() { stay_probability(stay_logit) } else { 0.0 };
        Self { stay, mean, sigma: log_sigma.exp() }
    }

    /// The expected next value: what a single deterministic step uses.
    pub fn expected(&self, current: Option<f64>) -> f64 {
        expected_value(self.stay, current, self.mean)
    }
}

/// The expected next value given the probability that it stays.
pub fn expected_value(stay: f64, current: Option<f64>, mean: f64) -> f64 {
    stay * current.unwrap_or(0.0) + (1.0 - stay) * mean
}

pub fn stay_probability(logit: f64) -> f64 {
    1.0 / (1.0 + (-logit).exp())
}

/// Each member's expected next value of every feature (z units), from its
/// heads and the current values (`None` = missing now).
pub fn expected_values(current: &[Option<f64>], stay_logit: &[f32], mean: &[f32], log_sigma: &[f32]) -> Vec<f64> {
    (0..mean.len())
        .map(|d| Component::new(current[d], stay_logit[d] as f64, mean[d] as f64, log_sigma[d] as f64).expected(current[d]))
        .collect()
}

#[cfg(feature = "eval")]
pub use distribution::{median, pit_in_interval};

#[cfg(feature = "eval")]
mod distribution {
    use super::Component;

    fn normal_cdf(x: f64) -> f64 {
        0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    /// P(X < x) and P(X <= x) of the ensemble's mixture: they differ by the
    /// point mass at the current value.
    fn cdf(components: &[Component], current: Option<f64>, x: f64) -> (f64, f64) {
        let k = components.len() as f64;
        let continuous: f64 = components.iter().map(|c| (1.0 - c.stay) * normal_cdf((x - c.mean) / c.sigma)).sum::<f64>() / k;
        let stay = components.iter().map(|c| c.stay).sum::<f64>() / k;
        match current {
            Some(v) if v < x => (continuous + stay, continuous + stay),
            Some(v) if v == x => (continuous, continuous + stay),
            _ => (continuous, continuous),
        }
    }

    /// The smallest x with P(X <= x) >= q (bisection on the continuous part;
    /// the point mass is checked exactly).
    pub fn quantile(components: &[Component], current: Option<f64>, q: f64) -> f64 {
        if let Some(v) = current {
            let (below, at) = cdf(components, current, v);
            if below < q && q <= at {
                return v;
            }
        }
        let spread = components.iter().map(|c| c.sigma).fold(0.0, f64::max) * 12.0 + 1.0;
        let centre = components.iter().map(|c| c.mean).sum::<f64>() / components.len() as f64;
        let (mut low, mut high) = (centre - spread, centre + spread);
        if let Some(v) = current {
            low = low.min(v - 1.0);
            high = high.max(v + 1.0);
        }
        for _ in 0..80 {
            let mid = 0.5 * (low + high);
            if cdf(components, current, mid).1 >= q {
                high = mid;
            } else {
                low = mid;
            }
        }
        high
    }

    pub fn median(components: &[Component], current: Option<f64>) -> f64 {
        quantile(components, current, 0.5)
    }

    /// The probability that the randomised PIT of `truth` falls in the
    /// central interval [(1 - level) / 2, (1 + level) / 2]. Where `truth`
    /// carries point mass the PIT is uniform over [P(X < truth), P(X <=
    /// truth)]; elsewhere it is the CDF. Averaged over values, this is the
    /// interval's coverage, `level` for a calibrated forecast.
    pub fn pit_in_interval(components: &[Component], current: Option<f64>, truth: f64, level: f64) -> f64 {
        let (a, b) = ((1.0 - level) / 2.0, (1.0 + level) / 2.0);
        let (below, at) = cdf(components, current, truth);
        if at - below < 1e-12 {
            return f64::from(a <= below && below <= b);
        }
        ((at.min(b) - below.max(a)).max(0.0)) / (at - below)
    }
}

#[cfg(all(test, feature = "eval"))]
mod tests {
    use super::*;

    #[test]
    fn a_likely_stay_has_the_current_value_as_median() {
        let c = [Component { stay: 0.6, mean: 2.0, sigma: 1.0 }];
        assert_eq!(median(&c, Some(0.5)), 0.5);
        // Nothing to stay at (a value missing now): the Gaussian's own median.
        let gaussian = [Component::new(None, 3.0, 2.0, 0.0)];
        assert!((median(&gaussian, None) - 2.0).abs() < 1e-9);
        // An unlikely stay with the jump far above: the median moves past it.
        let jump = [Component { stay: 0.2, mean: 3.0, sigma: 0.5 }];
        let m = median(&jump, Some(0.0));
        // P(X <= m) = 0.2 + 0.8 Phi((m - 3) / 0.5) = 0.5  =>  Phi = 0.375.
        assert!((m - (3.0 + 0.5 * -0.318_639_363_964_375)).abs() < 1e-6, "median {m}");
    }

    #[test]
    fn the_randomised_pit_covers_the_point_mass_in_proportion() {
        let c = [Component { stay: 0.5, mean: 0.0, sigma: 1.0 }];
        // Current value at the Gaussian's median: P(X < 0) = 0.25, P(X <= 0) = 0.75;
        // the central 50% interval [0.25, 0.75] holds all of that mass.
        assert!((pit_in_interval(&c, Some(0.0), 0.0, 0.5) - 1.0).abs() < 1e-12);
        // The central 10% interval [0.45, 0.55] holds a fifth of it.
        assert!((pit_in_interval(&c, Some(0.0), 0.0, 0.1) - 0.2).abs() < 1e-12);
        // A value far in the tail is outside the 90% interval.
        assert_eq!(pit_in_interval(&c, Some(0.0), 5.0, 0.9), 0.0);
    }

    #[test]
    fn the_expected_value_weighs_staying_and_changing() {
        let c = Component::new(Some(1.0), 0.0, 3.0, 0.0);
        assert!((c.expected(Some(1.0)) - 2.0).abs() < 1e-12);
        let missing = Component::new(None, 5.0, 3.0, 0.0);
        assert_eq!((missing.stay, missing.expected(None)), (0.0, 3.0));
    }
}
