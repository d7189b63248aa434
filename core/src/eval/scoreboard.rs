//! The scoreboard: one row per named policy, as JSON for machines and as a
//! Markdown table for `docs/results.md`.

use serde::Serialize;

use crate::env::icu_sepsis::IcuSepsis;
use crate::eval::exact::{decision_rate, occupancy, table_value, ExactError};
use crate::policy::{Baseline, PolicyTable};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScoreRow {
    pub policy: String,
    /// Survival probability on ICU-Sepsis, computed exactly.
    pub exact_value: f64,
    /// Expected decisions per episode under the policy.
    pub mean_episode_length: f64,
    /// Share of decisions (visit-weighted) taking an action clinicians never
    /// took often enough in that state.
    pub out_of_support_rate: f64,
    /// True for rows that use the true MDP and so are upper bounds, not policies one could deploy.
    pub oracle: bool,
}

pub fn score(env: &IcuSepsis, name: &str, table: &PolicyTable, oracle: bool) -> Result<ScoreRow, ExactError> {
    let visits = occupancy(&env.mdp, table.rows())?;
    Ok(ScoreRow {
        policy: name.to_string(),
        exact_value: table_value(&env.mdp, table)?,
        mean_episode_length: visits.iter().sum(),
        out_of_support_rate: decision_rate(&visits, table.rows(), |s, a| !env.is_admissible(s, a)),
        oracle,
    })
}

pub fn score_baseline(env: &IcuSepsis, baseline: Baseline) -> Result<ScoreRow, ExactError> {
    score(env, baseline.name(), &baseline.table(env), baseline == Baseline::Optimal)
}

pub fn markdown(rows: &[ScoreRow]) -> String {
    let mut out = String::from("| policy | exact value (survival) | mean decisions per episode | out-of-support rate |\n|---|---|---|---|\n");
    for row in rows {
        let name = if row.oracle { format!("{} (oracle upper bound)", row.policy) } else { row.policy.clone() };
        out.push_str(&format!(
            "| {name} | {:.4} | {:.2} | {:.1}% |\n",
            row.exact_value,
            row.mean_episode_length,
            100.0 * row.out_of_support_rate
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_marks_oracles_and_formats_rates() {
        let rows = [
            ScoreRow { policy: "clinicians".into(), exact_value: 0.7812, mean_episode_length: 9.2, out_of_support_rate: 0.121, oracle: false },
            ScoreRow { policy: "optimal".into(), exact_value: 0.875, mean_episode_length: 11.0, out_of_support_rate: 0.02, oracle: true },
        ];
        let table = markdown(&rows);
        assert!(table.contains("| clinicians | 0.7812 | 9.20 | 12.1% |"), "{table}");
        assert!(table.contains("| optimal (oracle upper bound) | 0.8750 |"), "{table}");
    }
}
