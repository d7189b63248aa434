//! How good the world model is (`sepsis eval world-model`): one-step error
//! per feature against persistence, error 1-6 steps ahead, calibration of
//! the predictive intervals, ensemble disagreement on actions outside the
//! data's support, and the outcome head's discrimination.

use candle_core::{Device, Tensor};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ensemble::{summarise, EnsembleSummary, History, WorldModel};
use super::mixture::{median, pit_in_interval};
use crate::baselines::ai_clinician::AiClinician;
use crate::action::{Action, N_ACTIONS};
use crate::cohort::schema::FEATURES;
use crate::cohort::Cohort;
use crate::env::icu_sepsis::IcuSepsis;

const CHUNK: usize = 2048;
pub const HORIZON: usize = 6;

/// Ensemble summaries for a batch of windows (`n x window x input`), in chunks.
fn run(model: &WorldModel, inputs: &Tensor) -> candle_core::Result<EnsembleSummary> {
    let n = inputs.dim(0)?;
    let mut all = EnsembleSummary { forecasts: vec![], current: vec![], disagreement: vec![], death: vec![] };
    for start in (0..n).step_by(CHUNK) {
        let chunk = inputs.narrow(0, start, CHUNK.min(n - start))?;
        let s = summarise(&model.predict(&chunk)?, &chunk)?;
        all.forecasts.extend(s.forecasts);
        all.current.extend(s.current);
        all.disagreement.extend(s.disagreement);
        all.death.extend(s.death);
    }
    Ok(all)
}

/// Training-style windows as one tensor.
fn window_tensor(model: &WorldModel, inputs: &[f32], n: usize) -> candle_core::Result<Tensor> {
    Tensor::from_slice(inputs, (n, model.card.config.window, model.card.layout.input_dim()), &Device::Cpu)
}

#[derive(Clone, Debug)]
pub struct FeatureError {
    pub key: &'static str,
    pub unit: &'static str,
    pub model_mae_z: f64,
    pub persistence_mae_z: f64,
    /// Same errors in clinical units (z error x the feature's SD).
    pub model_mae: f64,
    pub persistence_mae: f64,
    /// Share of observed transitions in which the value changes.
    pub changes: f64,
    /// The error (z units) of the best possible forecast: the median of the
    /// value over the true ICU-Sepsis next-state distribution of the logged
    /// state and action. `None` without state ids.
    pub oracle_mae_z: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub windows: usize,
    pub one_step: Vec<FeatureError>,
    /// Mean over features of the z MAE, `k = 1..=6` steps ahead: (model, persistence, pairs).
    pub multi_step: Vec<(f64, f64, usize)>,
    pub coverage_50: f64,
    pub coverage_90: f64,
    pub auroc: f64,
    pub auprc: f64,
    /// The same measures for the truth: 1 - the exact survival probability of
    /// the ICU-Sepsis state under the clinicians' policy (an upper reference:
    /// how predictable death is from the state at all).
    pub oracle_auroc: Option<f64>,
    pub oracle_auprc: Option<f64>,
    pub death_rate: f64,
    /// Mean disagreement with the logged action vs. an out-of-support action.
    pub disagreement_in_support: f64,
    pub disagreement_out_of_support: f64,
    /// Mean disagreement with a random action in place of the logged one, by
    /// how often clinicians gave that action in the state's cluster of the
    /// training split (the planner's support): (counts, mean, windows).
    pub disagreement_by_count: Vec<(&'static str, f64, usize)>,
    /// (policy, exact value on ICU-Sepsis, value rolled out in the model).
    pub fidelity: Vec<(String, f64, f64)>,
}

pub const FIDELITY_ROLLOUTS: usize = 2000;
pub const FIDELITY_HORIZON: usize = 6;

/// Training-split counts of an action in a state's cluster, as buckets: none,
/// fewer than the planner's support threshold, at least it.
const COUNT_BUCKETS: [(&str, u32, u32); 3] = [("0", 0, 0), ("1-19", 1, 19), ("20 or more", 20, u32::MAX)];

/// Put `action` in place of the logged action of window `index`'s last step.
fn swap_action(inputs: &mut [f32], index: usize, window: usize, width: usize, action: Action) {
    let last = &mut inputs[(index * window + window - 1) * width + width - 10..(index * window + window) * width];
    last.iter_mut().for_each(|v| *v = 0.0);
    last[action.fluid as usize] = 1.0;
    last[5 + action.vaso as usize] = 1.0;
}

pub fn evaluate(model: &WorldModel, cohort: &Cohort, env: Option<&IcuSepsis>, support: Option<&AiClinician>, seed: u64) -> candle_core::Result<Report> {
    let card = &model.card;
    let (layout, normaliser, window) = (&card.layout, &card.normaliser, card.config.window);
    let windows = super::data::Windows::build(cohort, normaliser, layout, window);
    let n = windows.len();
    let summary = run(model, &window_tensor(model, &windows.inputs, n)?)?;
    let dims = layout.dynamic.len();

    // One step ahead, and calibration.
    let (mut model_err, mut persist_err, mut count, mut changed) = (vec![0.0f64; dims], vec![0.0f64; dims], vec![0.0f64; dims], vec![0.0f64; dims]);
    let (mut in50, mut in90, mut observed) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        for d in 0..dims {
            if windows.next_mask[i * dims + d] == 0.0 {
                continue;
            }
            let truth = windows.next[i * dims + d] as f64;
            let (forecast, current) = (&summary.forecasts[i][d], summary.current[i][d]);
            // Persistence has nothing to say about a value missing now; it
            // predicts 0 (the mean) there, as the model's input encodes it.
            let now = current.unwrap_or(0.0);
            model_err[d] += (median(forecast, current) - truth).abs();
            persist_err[d] += (now - truth).abs();
            changed[d] += f64::from((now - truth).abs() > 1e-6);
            count[d] += 1.0;
            in50 += pit_in_interval(forecast, current, truth, 0.5);
            in90 += pit_in_interval(forecast, current, truth, 0.9);
            observed += 1.0;
        }
    }
    let oracle = match env {
        Some(env) => oracle_errors(model, cohort, env, &windows),
        None => None,
    };
    let one_step = layout
        .dynamic
        .iter()
        .enumerate()
        .map(|(d, &f)| {
            let c = count[d].max(1.0);
            FeatureError {
                key: FEATURES[f].key,
                unit: FEATURES[f].unit,
                model_mae_z: model_err[d] / c,
                persistence_mae_z: persist_err[d] / c,
                model_mae: model_err[d] / c * normaliser.sd[f],
                persistence_mae: persist_err[d] / c * normaliser.sd[f],
                changes: changed[d] / c,
                oracle_mae_z: oracle.as_ref().map(|o| o[d]),
            }
        })
        .collect();

    let (auroc, auprc) = discrimination(&summary.death, &windows.died);
    let (oracle_auroc, oracle_auprc) = match env {
        Some(env) => {
            let clinicians = crate::policy::Baseline::Clinicians.table(env);
            let values = crate::eval::exact::state_values(&env.mdp, clinicians.rows()).map_err(candle_core::Error::wrap)?;
            let risk: Option<Vec<f32>> =
                cohort.patients.iter().flat_map(|p| &p.steps).map(|s| s.state.map(|state| 1.0 - values[state as usize] as f32)).collect();
            match risk {
                Some(risk) => {
                    let (a, p) = discrimination(&risk, &windows.died);
                    (Some(a), Some(p))
                }
                None => (None, None),
            }
        }
        None => (None, None),
    };
    let death_rate = windows.died.iter().map(|&d| d as f64).sum::<f64>() / n.max(1) as f64;
    let multi_step = multi_step(model, cohort)?;

    // Disagreement: the logged action against an action never admissible in that state.
    let (mut inside, mut outside) = (0.0, 0.0);
    if let Some(env) = env {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut swapped = windows.inputs.clone();
        let width = layout.input_dim();
        let mut chosen = Vec::new();
        let mut index = 0;
        for patient in &cohort.patients {
            for step in &patient.steps {
                if let Some(state) = step.state {
                    let outside_support: Vec<usize> = (0..N_ACTIONS).filter(|&a| !env.is_admissible(state as usize, a)).collect();
                    if let Some(&a) = outside_support.choose(&mut rng) {
                        swap_action(&mut swapped, index, window, width, Action::from_index(a).expect("0..25"));
                        chosen.push(index);
                    }
                }
                index += 1;
            }
        }
        let swapped_summary = run(model, &window_tensor(model, &swapped, n)?)?;
        let m = chosen.len().max(1) as f64;
        inside = chosen.iter().map(|&i| summary.disagreement[i] as f64).sum::<f64>() / m;
        outside = chosen.iter().map(|&i| swapped_summary.disagreement[i] as f64).sum::<f64>() / m;
    }
    // Disagreement by the training data's support: a random action in every
    // window, grouped by how often clinicians gave it in that state's cluster.
    let mut disagreement_by_count = Vec::new();
    if let Some(support) = support {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let mut swapped = windows.inputs.clone();
        let width = layout.input_dim();
        let mut counts = Vec::with_capacity(n);
        for (index, step) in cohort.patients.iter().flat_map(|p| &p.steps).enumerate() {
            let a = rng.random_range(0..N_ACTIONS);
            swap_action(&mut swapped, index, window, width, Action::from_index(a).expect("0..25"));
            counts.push(support.logged_counts(&step.values)[a]);
        }
        let swapped_summary = run(model, &window_tensor(model, &swapped, n)?)?;
        for (label, low, high) in COUNT_BUCKETS {
            let members: Vec<usize> = (0..n).filter(|&i| (low..=high).contains(&counts[i])).collect();
            let mean = members.iter().map(|&i| swapped_summary.disagreement[i] as f64).sum::<f64>() / members.len().max(1) as f64;
            disagreement_by_count.push((label, mean, members.len()));
        }
    }
    let mut fidelity = Vec::new();
    if let Some(env) = env {
        let index = super::fidelity::StateIndex::new(model, env);
        for baseline in crate::policy::Baseline::ALL {
            let table = baseline.table(env);
            let exact = crate::eval::exact::table_value(&env.mdp, &table).map_err(candle_core::Error::wrap)?;
            let in_model = super::fidelity::value_in_model(model, env, &index, &table, FIDELITY_ROLLOUTS, FIDELITY_HORIZON, seed)?;
            fidelity.push((baseline.name().to_string(), exact, in_model));
        }
    }
    Ok(Report {
        fidelity,
        windows: n,
        one_step,
        multi_step,
        coverage_50: in50 / observed.max(1.0),
        coverage_90: in90 / observed.max(1.0),
        auroc,
        auprc,
        oracle_auroc,
        oracle_auprc,
        death_rate,
        disagreement_in_support: inside,
        disagreement_out_of_support: outside,
        disagreement_by_count,
    })
}

/// Per feature, the z MAE of the MDP oracle's median forecast over the
/// windows with an observed next value, or `None` if a step lacks its state.
fn oracle_errors(model: &WorldModel, cohort: &Cohort, env: &IcuSepsis, windows: &super::data::Windows) -> Option<Vec<f64>> {
    let (layout, normaliser) = (&model.card.layout, &model.card.normaliser);
    let dims = layout.dynamic.len();
    let n_states = env.mdp.n_transient;
    let features: Vec<Vec<f64>> = (0..n_states)
        .map(|s| {
            let values = crate::env::clinical::state_features(env, s);
            layout.dynamic_z(normaliser, &values)
        })
        .collect();
    let (mut err, mut count) = (vec![0.0f64; dims], vec![0.0f64; dims]);
    let mut index = 0;
    for patient in &cohort.patients {
        for step in &patient.steps {
            let state = step.state? as usize;
            let next: Vec<(usize, f64)> =
                env.mdp.transitions(state, step.action.index()).iter().filter(|t| t.next < n_states).map(|t| (t.next, t.probability)).collect();
            let mass: f64 = next.iter().map(|t| t.1).sum();
            for d in 0..dims {
                if windows.next_mask[index * dims + d] == 0.0 || mass <= 0.0 {
                    continue;
                }
                let mut values: Vec<(f64, f64)> = next.iter().map(|&(s, p)| (features[s][d], p / mass)).collect();
                values.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut cumulative = 0.0;
                let median = values.iter().find(|(_, p)| {
                    cumulative += p;
                    cumulative >= 0.5
                });
                let median = median.map_or(values.last().map_or(0.0, |v| v.0), |v| v.0);
                err[d] += (median - windows.next[index * dims + d] as f64).abs();
                count[d] += 1.0;
            }
            index += 1;
        }
    }
    Some(err.iter().zip(&count).map(|(e, c)| e / c.max(1.0)).collect())
}

/// From every start step, carry the course forward along the ensemble's
/// expected values with the logged actions; the forecast `k` steps ahead is
/// the median of the ensemble's mixture for step `k` given that course,
/// compared with what was observed `k` steps later.
fn multi_step(model: &WorldModel, cohort: &Cohort) -> candle_core::Result<Vec<(f64, f64, usize)>> {
    let card = &model.card;
    let (layout, normaliser) = (&card.layout, &card.normaliser);
    // Every (patient, start) with at least one later step.
    let starts: Vec<(usize, usize)> =
        cohort.patients.iter().enumerate().flat_map(|(p, pat)| (0..pat.steps.len().saturating_sub(1)).map(move |t| (p, t))).collect();
    let mut histories: Vec<History> = starts
        .iter()
        .map(|&(p, t)| cohort.patients[p].steps[..=t].iter().map(|s| (s.values.clone(), s.action)).collect())
        .collect();
    let mut results = Vec::new();
    for k in 1..=HORIZON {
        let active: Vec<usize> = (0..starts.len()).filter(|&i| starts[i].1 + k < cohort.patients[starts[i].0].steps.len()).collect();
        if active.is_empty() {
            break;
        }
        let batch: Vec<History> = active.iter().map(|&i| histories[i].clone()).collect();
        let summary = run(model, &model.encode(&batch)?)?;
        let medians: Vec<Vec<f32>> =
            summary.forecasts.iter().zip(&summary.current).map(|(f, c)| f.iter().zip(c).map(|(m, &now)| median(m, now) as f32).collect()).collect();
        // The course goes on along the ensemble's expected values (a median
        // fed back k times would only ever repeat its own "no change").
        let expected: Vec<Vec<f32>> = summary
            .forecasts
            .iter()
            .zip(&summary.current)
            .map(|(f, c)| f.iter().zip(c).map(|(members, &now)| (members.iter().map(|m| m.expected(now)).sum::<f64>() / members.len() as f64) as f32).collect())
            .collect();
        let (mut model_err, mut persist_err, mut values) = (0.0f64, 0.0f64, 0.0f64);
        for (row, &i) in active.iter().enumerate() {
            let (p, t) = starts[i];
            let truth = &cohort.patients[p].steps[t + k];
            let origin = &cohort.patients[p].steps[t];
            let predicted = model.predicted_values(&histories[i].last().expect("non-empty").0, &expected[row]);
            for (d, &f) in layout.dynamic.iter().enumerate() {
                let z = medians[row][d] as f64;
                if let (Some(actual), Some(start)) = (truth.values[f], origin.values[f]) {
                    model_err += (z - normaliser.z(f, actual)).abs();
                    persist_err += (normaliser.z(f, start) - normaliser.z(f, actual)).abs();
                    values += 1.0;
                }
            }
            histories[i].push((predicted, truth.action));
        }
        results.push((model_err / values.max(1.0), persist_err / values.max(1.0), active.len()));
    }
    Ok(results)
}

/// AUROC (rank-sum, ties averaged) and AUPRC (average precision).
pub fn discrimination(scores: &[f32], labels: &[f32]) -> (f64, f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l > 0.5).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    // Average ranks over ties.
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    let positive_ranks: f64 = ranks.iter().zip(labels).filter(|(_, &l)| l > 0.5).map(|(r, _)| r).sum();
    let auroc = (positive_ranks - positives * (positives + 1.0) / 2.0) / (positives * negatives);
    // Average precision: walk from the highest score down.
    let (mut true_positives, mut seen, mut ap) = (0.0, 0.0, 0.0);
    for &o in order.iter().rev() {
        seen += 1.0;
        if labels[o] > 0.5 {
            true_positives += 1.0;
            ap += true_positives / seen;
        }
    }
    (auroc, ap / positives)
}

pub fn markdown(report: &Report, model_name: &str) -> String {
    let mut out = format!(
        "Model: `{model_name}` ({} windows of the ICU-Sepsis test split). Errors are mean absolute errors of the ensemble's median forecast \
         (each member: the value stays with its stay probability, or moves to its Gaussian; docs/world-model.md); \
         *persistence* predicts that nothing changes; the *MDP oracle* knows the true ICU-Sepsis state and \
         predicts the median of the value over its true next-state distribution for the logged action: no model of \
         this data can do better on average.\n\n### One step (4 h) ahead\n\n\
         | feature | unit | model MAE | persistence MAE | model MAE (z) | persistence MAE (z) | MDP oracle MAE (z) | changes in |\n|---|---|---|---|---|---|---|---|\n",
        report.windows
    );
    for f in &report.one_step {
        out.push_str(&format!(
            "| `{}` | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.0}% |\n",
            f.key,
            if f.unit.is_empty() { "—" } else { f.unit },
            f.model_mae,
            f.persistence_mae,
            f.model_mae_z,
            f.persistence_mae_z,
            f.oracle_mae_z.map_or("—".to_string(), |o| format!("{o:.3}")),
            100.0 * f.changes
        ));
    }
    let mean = |pick: fn(&FeatureError) -> f64| report.one_step.iter().map(pick).sum::<f64>() / report.one_step.len().max(1) as f64;
    out.push_str(&format!(
        "| **mean (z)** | | | | **{:.3}** | **{:.3}** | **{}** | |\n\n### 1 to {HORIZON} steps ahead (mean z MAE over features; the course carried on the expected values with the logged actions, the median forecast at each step)\n\n\
         | steps ahead | model | persistence | rollouts |\n|---|---|---|---|\n",
        mean(|f| f.model_mae_z),
        mean(|f| f.persistence_mae_z),
        if report.one_step.iter().all(|f| f.oracle_mae_z.is_some()) { format!("{:.3}", mean(|f| f.oracle_mae_z.unwrap_or(0.0))) } else { "—".into() }
    ));
    for (k, (m, p, n)) in report.multi_step.iter().enumerate() {
        out.push_str(&format!("| {} | {m:.3} | {p:.3} | {n} |\n", k + 1));
    }
    out.push_str(&format!(
        "\n### Calibration, uncertainty and outcome\n\n\
         | measure | value |\n|---|---|\n\
         | 50% central interval coverage, randomised PIT (ideal 50%) | {:.1}% |\n\
         | 90% central interval coverage, randomised PIT (ideal 90%) | {:.1}% |\n\
         | ensemble disagreement, logged action | {:.4} |\n\
         | ensemble disagreement, an out-of-support action in the same state | {:.4} |\n\
         | outcome head AUROC (per window) | {:.3} |\n\
         | outcome head AUPRC (per window; death rate {:.1}%) | {:.3} |\n\
         | reference: AUROC / AUPRC of the exact state risk (1 - state value under the clinicians) | {} |\n",
        100.0 * report.coverage_50,
        100.0 * report.coverage_90,
        report.disagreement_in_support,
        report.disagreement_out_of_support,
        report.auroc,
        100.0 * report.death_rate,
        report.auprc,
        match (report.oracle_auroc, report.oracle_auprc) {
            (Some(a), Some(p)) => format!("{a:.3} / {p:.3}"),
            _ => "— (no state ids)".to_string(),
        }
    ));
    if !report.disagreement_by_count.is_empty() {
        out.push_str(
            "\n### Disagreement by the data's support\n\n\
             A random action in place of the logged one in every window, grouped by how often clinicians gave that action \
             in the state's cluster of the training split (the AI Clinician's 750 clusters, `public/models/ai-clinician.json`; \
             the planner counts an action as supported from 20). \"Out of support\" above is the benchmark's own \
             admissibility instead.\n\n\
             | clinicians gave the action in this cluster | windows | mean disagreement |\n|---|---|---|\n",
        );
        for (label, mean, windows) in &report.disagreement_by_count {
            out.push_str(&format!("| {label} times | {windows} | {mean:.4} |\n"));
        }
    }
    if !report.fidelity.is_empty() {
        out.push_str(&format!(
            "\n### Policy values inside the model\n\n\
             Each policy rolled out {FIDELITY_ROLLOUTS} times in the model from ICU-Sepsis start states for {FIDELITY_HORIZON} steps \
             (rollout i follows member i mod K; the policy acts at the nearest ICU-Sepsis state), survival = 1 − the \
             outcome head's mean probability of death at the end; against the exact value.\n\n\
             | policy | exact value | value in the model | difference |\n|---|---|---|---|\n"
        ));
        for (name, exact, in_model) in &report.fidelity {
            out.push_str(&format!("| {name} | {exact:.4} | {in_model:.4} | {:+.4} |\n", in_model - exact));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrimination_matches_hand_computed_values() {
        // Scores 0.1 0.4 0.35 0.8 with labels 0 0 1 1: AUROC 0.75; AP = (1/1 + 2/3) / 2.
        let (auroc, auprc) = discrimination(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]);
        assert!((auroc - 0.75).abs() < 1e-12);
        assert!((auprc - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        let (tied, _) = discrimination(&[0.5, 0.5], &[0.0, 1.0]);
        assert!((tied - 0.5).abs() < 1e-12);
    }
}
