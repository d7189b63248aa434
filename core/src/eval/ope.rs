//! Off-policy estimates of a policy's value from a logged cohort: WIS,
//! WPDIS and weighted doubly robust (WDR, Thomas & Brunskill 2016) with a
//! tabular FQE model, each with a bootstrap 95% interval and the effective
//! sample size. On ICU-Sepsis the truth is known exactly, so every estimator
//! is checked against it (docs/results.md).
//!
//! Conventions (clinical-reference.md section 5):
//! - reward 1 at the end of a survived episode, 0 otherwise; gamma = 1;
//! - behaviour policy: the empirical action frequencies per state of the
//!   logged cohort (every logged action therefore has probability > 0);
//! - the evaluation policy is softened, `(1 - eps) pi_e + eps / 25` with
//!   eps = 0.01 (as AI Clinician's p = 0.01), so a deterministic policy
//!   that disagrees once does not zero an episode's weight;
//! - after an episode ends its weight stays fixed and its rewards are 0.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::action::N_ACTIONS;
use crate::cohort::{Cohort, Outcome};
pub use crate::report::{Interval, OpeReport};

pub const SOFTENING: f64 = 0.01;
pub const BOOTSTRAP_SAMPLES: usize = 200;
/// FQE sweeps over the logged transitions (episodes are short; this converges).
const FQE_SWEEPS: usize = 60;

/// One logged episode on state ids; the return is 1 if the patient survived.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEpisode {
    pub steps: Vec<(usize, usize)>,
    pub survived: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpeError {
    #[error("patient {0:?} has a step without an ICU-Sepsis state id; state-based OPE needs them")]
    NoState(String),
    #[error("the logged cohort is empty")]
    Empty,
}

pub fn logged_episodes(cohort: &Cohort) -> Result<Vec<LoggedEpisode>, OpeError> {
    if cohort.patients.is_empty() {
        return Err(OpeError::Empty);
    }
    cohort
        .patients
        .iter()
        .map(|p| {
            let steps = p
                .steps
                .iter()
                .map(|s| s.state.map(|state| (state as usize, s.action.index())).ok_or_else(|| OpeError::NoState(p.id.clone())))
                .collect::<Result<_, _>>()?;
            Ok(LoggedEpisode { steps, survived: p.outcome == Outcome::Survived })
        })
        .collect()
}

/// Empirical behaviour policy `pi_b(a | s)` over `n_states` states.
pub fn behaviour_policy(episodes: &[LoggedEpisode], n_states: usize) -> Vec<[f64; N_ACTIONS]> {
    let mut counts = vec![[0.0; N_ACTIONS]; n_states];
    for &(s, a) in episodes.iter().flat_map(|e| &e.steps) {
        counts[s][a] += 1.0;
    }
    for row in &mut counts {
        let total: f64 = row.iter().sum();
        if total > 0.0 {
            row.iter_mut().for_each(|c| *c /= total);
        }
    }
    counts
}

pub fn soften(rows: &[[f64; N_ACTIONS]]) -> Vec<[f64; N_ACTIONS]> {
    rows.iter().map(|row| std::array::from_fn(|a| (1.0 - SOFTENING) * row[a] + SOFTENING / N_ACTIONS as f64)).collect()
}

/// Tabular fitted-Q evaluation of `pi_e` on the logged transitions.
/// Returns `Q(s, a)`; actions never logged in a state get the mean Q of the
/// logged ones there (the data say nothing about them).
pub fn fqe(episodes: &[LoggedEpisode], pi_e: &[[f64; N_ACTIONS]]) -> Vec<[f64; N_ACTIONS]> {
    let n = pi_e.len();
    let mut q = vec![[0.0; N_ACTIONS]; n];
    let mut seen = vec![[false; N_ACTIONS]; n];
    for &(s, a) in episodes.iter().flat_map(|e| &e.steps) {
        seen[s][a] = true;
    }
    for _ in 0..FQE_SWEEPS {
        let value = |q: &[[f64; N_ACTIONS]], s: usize| -> f64 { (0..N_ACTIONS).map(|a| pi_e[s][a] * q[s][a]).sum() };
        let mut sum = vec![[0.0; N_ACTIONS]; n];
        let mut count = vec![[0.0; N_ACTIONS]; n];
        for e in episodes {
            for (t, &(s, a)) in e.steps.iter().enumerate() {
                let target = match e.steps.get(t + 1) {
                    Some(&(next, _)) => value(&q, next),
                    None => f64::from(u8::from(e.survived)),
                };
                sum[s][a] += target;
                count[s][a] += 1.0;
            }
        }
        for s in 0..n {
            let logged: Vec<usize> = (0..N_ACTIONS).filter(|&a| seen[s][a]).collect();
            for &a in &logged {
                q[s][a] = sum[s][a] / count[s][a];
            }
            if !logged.is_empty() {
                let mean = logged.iter().map(|&a| q[s][a]).sum::<f64>() / logged.len() as f64;
                (0..N_ACTIONS).filter(|&a| !seen[s][a]).for_each(|a| q[s][a] = mean);
            }
        }
    }
    q
}

/// The three point estimates and the effective sample size of the final weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointEstimates {
    pub wis: f64,
    pub wpdis: f64,
    pub dr: f64,
    pub ess: f64,
}

/// Cumulative importance weights `w_{i,t}` (padded to the longest episode).
fn cumulative_weights(episodes: &[&LoggedEpisode], pi_e: &[[f64; N_ACTIONS]], pi_b: &[[f64; N_ACTIONS]], horizon: usize) -> Vec<Vec<f64>> {
    episodes
        .iter()
        .map(|e| {
            let mut w = 1.0;
            (0..horizon)
                .map(|t| {
                    if let Some(&(s, a)) = e.steps.get(t) {
                        w *= pi_e[s][a] / pi_b[s][a];
                    }
                    w
                })
                .collect()
        })
        .collect()
}

pub fn estimate(episodes: &[&LoggedEpisode], pi_e: &[[f64; N_ACTIONS]], pi_b: &[[f64; N_ACTIONS]], q: &[[f64; N_ACTIONS]]) -> PointEstimates {
    let horizon = episodes.iter().map(|e| e.steps.len()).max().unwrap_or(0);
    let weights = cumulative_weights(episodes, pi_e, pi_b, horizon);
    let reward = |e: &LoggedEpisode, t: usize| if t + 1 == e.steps.len() && e.survived { 1.0 } else { 0.0 };
    let value = |s: usize| -> f64 { (0..N_ACTIONS).map(|a| pi_e[s][a] * q[s][a]).sum() };
    let column_sum = |t: usize| weights.iter().map(|w| w[t]).sum::<f64>();

    let finals: Vec<f64> = weights.iter().map(|w| *w.last().unwrap_or(&1.0)).collect();
    let total: f64 = finals.iter().sum();
    let wis = episodes.iter().zip(&finals).map(|(e, w)| w * f64::from(u8::from(e.survived))).sum::<f64>() / total;
    let ess = total * total / finals.iter().map(|w| w * w).sum::<f64>();

    let mut wpdis = 0.0;
    let mut dr = 0.0;
    let n = episodes.len() as f64;
    for t in 0..horizon {
        let norm = column_sum(t);
        let previous_norm = if t == 0 { n } else { column_sum(t - 1) };
        for (e, w) in episodes.iter().zip(&weights) {
            let (current, previous) = (w[t] / norm, if t == 0 { 1.0 / n } else { w[t - 1] / previous_norm });
            wpdis += current * reward(e, t);
            if let Some(&(s, a)) = e.steps.get(t) {
                dr += current * reward(e, t) - (current * q[s][a] - previous * value(s));
            }
        }
    }
    PointEstimates { wis, wpdis, dr, ess }
}

/// The 2.5 and 97.5 percentiles of bootstrap `samples` around `estimate`
/// (non-finite samples, from resamples with zero total weight, dropped).
pub fn percentile_interval(estimate: f64, mut samples: Vec<f64>) -> Interval {
    samples.retain(|v| v.is_finite());
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples.get(((samples.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN);
    Interval { estimate, low: at(0.025), high: at(0.975) }
}

/// All estimators with percentile-bootstrap 95% intervals (episodes resampled;
/// behaviour policy and FQE model fitted once on the whole cohort).
pub fn evaluate(episodes: &[LoggedEpisode], n_states: usize, pi_e: &[[f64; N_ACTIONS]], seed: u64) -> OpeReport {
    let pi_b = behaviour_policy(episodes, n_states);
    let pi_e = soften(pi_e);
    let q = fqe(episodes, &pi_e);
    let all: Vec<&LoggedEpisode> = episodes.iter().collect();
    let point = estimate(&all, &pi_e, &pi_b, &q);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let samples: Vec<PointEstimates> = (0..BOOTSTRAP_SAMPLES)
        .map(|_| {
            let resample: Vec<&LoggedEpisode> = (0..episodes.len()).map(|_| &episodes[rng.random_range(0..episodes.len())]).collect();
            estimate(&resample, &pi_e, &pi_b, &q)
        })
        .collect();
    let interval = |estimate: f64, pick: fn(&PointEstimates) -> f64| percentile_interval(estimate, samples.iter().map(pick).collect());
    OpeReport {
        wis: interval(point.wis, |p| p.wis),
        wpdis: interval(point.wpdis, |p| p.wpdis),
        dr: interval(point.dr, |p| p.dr),
        ess: point.ess,
        episodes: episodes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(a: usize) -> [f64; N_ACTIONS] {
        let mut row = [0.0; N_ACTIONS];
        row[a] = 1.0;
        row
    }

    /// One state, one step. Logged: action 0 survives, action 1 dies, each
    /// taken half the time. pi_e takes action 0 with 0.8: true value 0.8.
    fn bandit() -> (Vec<LoggedEpisode>, Vec<[f64; N_ACTIONS]>) {
        let episodes = vec![LoggedEpisode { steps: vec![(0, 0)], survived: true }, LoggedEpisode { steps: vec![(0, 1)], survived: false }];
        let mut row = [0.0; N_ACTIONS];
        row[0] = 0.8;
        row[1] = 0.2;
        (episodes, vec![row])
    }

    #[test]
    fn every_estimator_recovers_the_bandit_value() {
        let (episodes, pi_e) = bandit();
        let pi_b = behaviour_policy(&episodes, 1);
        assert_eq!((pi_b[0][0], pi_b[0][1]), (0.5, 0.5));
        let q = fqe(&episodes, &pi_e);
        assert_eq!((q[0][0], q[0][1]), (1.0, 0.0));
        let all: Vec<&LoggedEpisode> = episodes.iter().collect();
        let p = estimate(&all, &pi_e, &pi_b, &q);
        for (name, v) in [("wis", p.wis), ("wpdis", p.wpdis), ("dr", p.dr)] {
            assert!((v - 0.8).abs() < 1e-12, "{name} = {v}");
        }
        // Weights 1.6 and 0.4: ESS = 4 / (2.56 + 0.16).
        assert!((p.ess - 4.0 / 2.72).abs() < 1e-12);
    }

    #[test]
    fn on_policy_estimates_equal_the_observed_survival() {
        // Two-step episodes in which pi_e is exactly the logging policy.
        let episodes = vec![
            LoggedEpisode { steps: vec![(0, 0), (1, 2)], survived: true },
            LoggedEpisode { steps: vec![(0, 1), (1, 2)], survived: false },
            LoggedEpisode { steps: vec![(0, 0)], survived: true },
            LoggedEpisode { steps: vec![(0, 1), (1, 2), (1, 2)], survived: true },
        ];
        let pi_b = behaviour_policy(&episodes, 2);
        let q = fqe(&episodes, &pi_b);
        let all: Vec<&LoggedEpisode> = episodes.iter().collect();
        let p = estimate(&all, &pi_b, &pi_b, &q);
        for v in [p.wis, p.wpdis, p.dr] {
            assert!((v - 0.75).abs() < 1e-12, "{v}");
        }
        assert!((p.ess - 4.0).abs() < 1e-12);
    }

    #[test]
    fn softening_keeps_rows_distributions_with_floor() {
        let soft = soften(&[one_hot(3)]);
        assert!((soft[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((soft[0][0] - 0.0004).abs() < 1e-12 && (soft[0][3] - 0.9904).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_interval_contains_the_estimate() {
        let (mut episodes, pi_e) = bandit();
        for i in 0..50 {
            episodes.push(LoggedEpisode { steps: vec![(0, i % 2)], survived: i % 2 == 0 });
        }
        let report = evaluate(&episodes, 1, &pi_e, 1);
        for interval in [report.wis, report.wpdis, report.dr] {
            assert!(interval.low <= interval.estimate && interval.estimate <= interval.high, "{interval:?}");
        }
        assert!(report.wis.high - report.wis.low > 0.05, "resampling episodes moves WIS: {:?}", report.wis);
        // With a perfect Q model every episode's DR term is V(s0): no spread.
        assert!((report.dr.high - report.dr.low).abs() < 1e-12);
    }
}
