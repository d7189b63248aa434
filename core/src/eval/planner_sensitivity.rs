//! How much `wm-mpc`'s exact value depends on its settings: the planner
//! scored on ICU-Sepsis over a grid of horizons, support thresholds and
//! disagreement penalties around its defaults, with the guideline penalty
//! at its default. A sensitivity analysis, not a tuning: the defaults
//! (`MpcConfig::default`) were chosen before this grid was run, and picking
//! its best cell would tune the planner on the evaluation itself.

use crate::env::icu_sepsis::IcuSepsis;
use crate::eval::exact::table_value;
use crate::eval::safety::exact_safety;
use crate::planner::{icu_sepsis::policy_table, MpcConfig};
use crate::world_model::WorldModel;
use crate::baselines::ai_clinician::AiClinician;

pub struct SensitivityRow {
    pub config: MpcConfig,
    pub exact_value: f64,
    pub out_of_support_rate: f64,
    pub unsafe_rate: f64,
}

/// Every combination of the given settings, with the support model's own
/// threshold among the thresholds, scored exactly.
pub fn sensitivity(
    env: &IcuSepsis,
    model: &WorldModel,
    support: &AiClinician,
    horizons: &[usize],
    min_supports: &[u32],
    disagreement_penalties: &[f64],
) -> Result<Vec<SensitivityRow>, Box<dyn std::error::Error + Send + Sync>> {
    let mut rows = Vec::new();
    for &horizon in horizons {
        // The support model's own threshold is always in the grid, so the
        // row the scoreboard runs is there (and `markdown` marks it).
        for min_support in crate::eval::ceiling::with_rule(min_supports, support.min_support()) {
            for &disagreement_penalty in disagreement_penalties {
                let config = MpcConfig { horizon, min_support: Some(min_support), disagreement_penalty, ..MpcConfig::default() };
                let table = policy_table(model, support, env, &config)?;
                let safety = exact_safety(env, &table)?;
                rows.push(SensitivityRow {
                    exact_value: table_value(&env.mdp, &table)?,
                    out_of_support_rate: safety.out_of_support_rate,
                    unsafe_rate: safety.unsafe_rate,
                    config,
                });
            }
        }
    }
    Ok(rows)
}

/// One table row per setting (the defaults marked, with the support model's
/// threshold `default_min_support`), then the range.
pub fn markdown(rows: &[SensitivityRow], default_min_support: u32) -> String {
    let default = MpcConfig { min_support: Some(default_min_support), ..MpcConfig::default() };
    let mut out = String::from(
        "| horizon (steps) | min. logged count | disagreement penalty | exact value | out of support | unsafe (G1+G2) | |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.config;
        out.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.1}% | {:.1}% | {} |\n",
            c.horizon,
            c.min_support.unwrap_or(default_min_support),
            c.disagreement_penalty,
            r.exact_value,
            100.0 * r.out_of_support_rate,
            100.0 * r.unsafe_rate,
            if *c == default { "the defaults" } else { "" }
        ));
    }
    let (low, high) = rows.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), r| (l.min(r.exact_value), h.max(r.exact_value)));
    out.push_str(&format!("\nOver the {} settings the exact value ranges from {low:.4} to {high:.4}.\n", rows.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_marks_the_defaults_and_states_the_range() {
        let row = |horizon: usize, exact_value: f64| SensitivityRow {
            config: MpcConfig { horizon, min_support: Some(20), ..MpcConfig::default() },
            exact_value,
            out_of_support_rate: 0.004,
            unsafe_rate: 0.048,
        };
        let table = markdown(&[row(1, 0.7834), row(MpcConfig::default().horizon, 0.7844), row(6, 0.7855)], 20);
        let marked: Vec<&str> = table.lines().filter(|l| l.ends_with("| the defaults |")).collect();
        assert_eq!(marked, vec!["| 2 | 20 | 1 | 0.7844 | 0.4% | 4.8% | the defaults |"]);
        assert!(table.contains("Over the 3 settings the exact value ranges from 0.7834 to 0.7855."), "{table}");
    }
}
