//! The scoreboard: one row per named policy, as JSON for machines and as
//! Markdown for `docs/results.md`. Exact value and safety rates come from the
//! true MDP; WIS / WPDIS / DR are estimated from a logged cohort sampled from
//! it, so every estimator's error against the truth is visible.

use serde::{Deserialize, Serialize};

use crate::env::cohort_sampling::{sample_cohort, split};
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::eval::exact::{occupancy, table_value, ExactError};
use crate::eval::ope::{evaluate, logged_episodes, Interval, LoggedEpisode};
use crate::eval::safety::exact_safety;
use crate::eval::policies::NamedPolicy;
use crate::policy::{Baseline, PolicyTable};

/// The logged cohort OPE uses: the test split of the first 20,000 clinicians'
/// episodes of the seed-2026 stream - 3,000 patients. `make data` splits per
/// block of 20,000 (`cohort_sampling::split`), so these are its first block's
/// test patients at any cohort size, and the OPE figures do not move with it.
pub const LOGGED_EPISODES: usize = 20_000;
pub const LOGGED_SEED: u64 = 2026;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScoreRow {
    pub policy: String,
    /// Survival probability on ICU-Sepsis, computed exactly.
    pub exact_value: f64,
    pub wis: f64,
    pub wpdis: f64,
    pub dr: f64,
    /// Bootstrap 95% intervals of the three estimates, `[low, high]`.
    pub wis_ci: [f64; 2],
    pub wpdis_ci: [f64; 2],
    pub dr_ci: [f64; 2],
    /// Effective sample size of the importance weights, of `logged_episodes`.
    pub ess: f64,
    pub logged_episodes: usize,
    pub g1_rate: f64,
    pub g2_rate: f64,
    pub unsafe_rate: f64,
    pub out_of_support_rate: f64,
    pub guideline_adherence: f64,
    /// Expected decisions per episode under the policy.
    pub mean_episode_length: f64,
    /// True for rows that use the true MDP and so are upper bounds, not policies one could deploy.
    pub oracle: bool,
    /// How an LLM agent behaved (agent rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStats>,
}

/// How the agent behaved over the states it decided in (unweighted).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStats {
    pub decisions: usize,
    /// Decisions that ended in the agent's own prescription, with no
    /// malformed turn and no fallback.
    pub valid_protocol_rate: f64,
    pub tool_calls_per_decision: f64,
    pub simulate_calls_per_decision: f64,
    /// Decisions where the safe default was given.
    pub fallback_rate: f64,
    /// Mean wall time of the decisions made in this run (cached ones excluded).
    pub seconds_per_decision: Option<f64>,
}

pub struct Scoreboard<'a> {
    env: &'a IcuSepsis,
    logged: Vec<LoggedEpisode>,
}

impl<'a> Scoreboard<'a> {
    pub fn new(env: &'a IcuSepsis) -> Self {
        let clinicians = Baseline::Clinicians.table(env);
        let test = split(&sample_cohort(env, &clinicians, LOGGED_EPISODES, LOGGED_SEED), LOGGED_SEED).test;
        let logged = logged_episodes(&test).expect("sampled cohorts carry state ids");
        Self { env, logged }
    }

    pub fn score(&self, name: &str, table: &PolicyTable, oracle: bool) -> Result<ScoreRow, ExactError> {
        let env = self.env;
        let visits = occupancy(&env.mdp, table.rows())?;
        let safety = exact_safety(env, table)?;
        let ope = evaluate(&self.logged, N_PATIENT_STATES, table.rows(), LOGGED_SEED);
        let ci = |i: Interval| [i.low, i.high];
        Ok(ScoreRow {
            policy: name.to_string(),
            exact_value: table_value(&env.mdp, table)?,
            wis: ope.wis.estimate,
            wpdis: ope.wpdis.estimate,
            dr: ope.dr.estimate,
            wis_ci: ci(ope.wis),
            wpdis_ci: ci(ope.wpdis),
            dr_ci: ci(ope.dr),
            ess: ope.ess,
            logged_episodes: ope.episodes,
            g1_rate: safety.g1_rate,
            g2_rate: safety.g2_rate,
            unsafe_rate: safety.unsafe_rate,
            out_of_support_rate: safety.out_of_support_rate,
            guideline_adherence: safety.guideline_adherence,
            mean_episode_length: visits.iter().sum(),
            oracle,
            agent: None,
        })
    }

    pub fn score_named(&self, policy: &NamedPolicy) -> Result<ScoreRow, ExactError> {
        Ok(ScoreRow { agent: policy.agent.clone(), ..self.score(&policy.name, &policy.table, policy.oracle)? })
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn with_ci(estimate: f64, ci: [f64; 2]) -> String {
    format!("{estimate:.3} [{:.3}, {:.3}]", ci[0], ci[1])
}

/// The main table: value, estimates, safety.
pub fn markdown(rows: &[ScoreRow]) -> String {
    let mut out = String::from(
        "| policy | exact value | WIS [95% CI] | WPDIS [95% CI] | DR [95% CI] | ESS | G1 | G2 | unsafe (G1+G2) | out of support | guideline adherence |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let name = if row.oracle { format!("{} (oracle upper bound)", row.policy) } else { row.policy.clone() };
        out.push_str(&format!(
            "| {name} | {:.4} | {} | {} | {} | {:.0} / {} | {} | {} | {} | {} | {} |\n",
            row.exact_value,
            with_ci(row.wis, row.wis_ci),
            with_ci(row.wpdis, row.wpdis_ci),
            with_ci(row.dr, row.dr_ci),
            row.ess,
            row.logged_episodes,
            pct(row.g1_rate),
            pct(row.g2_rate),
            pct(row.unsafe_rate),
            pct(row.out_of_support_rate),
            pct(row.guideline_adherence),
        ));
    }
    out
}

/// How the LLM agents behaved, one row per agent row (unweighted over the
/// states they decided in).
pub fn agent_markdown(rows: &[ScoreRow]) -> String {
    let mut out = String::from("| agent | decisions | valid protocol | tool calls / decision | simulate calls / decision | safe-default fallbacks |\n|---|---|---|---|---|---|\n");
    for row in rows {
        if let Some(a) = &row.agent {
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {} |\n",
                row.policy,
                a.decisions,
                pct(a.valid_protocol_rate),
                a.tool_calls_per_decision,
                a.simulate_calls_per_decision,
                pct(a.fallback_rate)
            ));
        }
    }
    out
}

/// Each estimator's error against the exact value, and whether its interval covers the truth.
pub fn estimator_errors(rows: &[ScoreRow]) -> String {
    let mut out = String::from("| policy | exact value | WIS error | WPDIS error | DR error |\n|---|---|---|---|---|\n");
    let cell = |estimate: f64, ci: [f64; 2], truth: f64| {
        let covered = if ci[0] <= truth && truth <= ci[1] { "covered" } else { "not covered" };
        format!("{:+.3} ({covered})", estimate - truth)
    };
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.4} | {} | {} | {} |\n",
            row.policy,
            row.exact_value,
            cell(row.wis, row.wis_ci, row.exact_value),
            cell(row.wpdis, row.wpdis_ci, row.exact_value),
            cell(row.dr, row.dr_ci, row.exact_value)
        ));
    }
    let mean_abs = |pick: fn(&ScoreRow) -> f64| rows.iter().map(|r| (pick(r) - r.exact_value).abs()).sum::<f64>() / rows.len().max(1) as f64;
    out.push_str(&format!(
        "| mean absolute error | | {:.3} | {:.3} | {:.3} |\n",
        mean_abs(|r| r.wis),
        mean_abs(|r| r.wpdis),
        mean_abs(|r| r.dr)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(policy: &str, exact: f64, estimate: f64, oracle: bool) -> ScoreRow {
        ScoreRow {
            policy: policy.into(),
            exact_value: exact,
            wis: estimate,
            wpdis: estimate,
            dr: estimate,
            wis_ci: [estimate - 0.01, estimate + 0.01],
            wpdis_ci: [estimate - 0.01, estimate + 0.01],
            dr_ci: [estimate - 0.01, estimate + 0.01],
            ess: 1234.4,
            logged_episodes: 3000,
            g1_rate: 0.0031,
            g2_rate: 0.0019,
            unsafe_rate: 0.0054,
            out_of_support_rate: 0.121,
            guideline_adherence: 0.9476,
            mean_episode_length: 9.2,
            oracle,
            agent: None,
        }
    }

    #[test]
    fn agent_rows_get_their_behaviour_table_and_others_do_not() {
        let stats = AgentStats { decisions: 713, valid_protocol_rate: 0.99, tool_calls_per_decision: 2.5, simulate_calls_per_decision: 1.5, fallback_rate: 0.01, seconds_per_decision: None };
        let rows = [row("clinicians", 0.78, 0.78, false), ScoreRow { agent: Some(stats), ..row("llm-zero-shot-wm", 0.79, 0.79, false) }];
        let table = agent_markdown(&rows);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("| llm-zero-shot-wm | 713 | 99.0% | 2.50 | 1.50 | 1.0% |"), "{table}");
        assert!(serde_json::to_string(&rows[0]).unwrap().find("agent").is_none());
        assert!(serde_json::to_string(&rows[1]).unwrap().contains("\"valid_protocol_rate\":0.99"));
    }

    #[test]
    fn markdown_marks_oracles_and_formats_rates_and_intervals() {
        let table = markdown(&[row("clinicians", 0.7812, 0.79, false), row("optimal", 0.875, 0.9, true)]);
        assert!(table.contains("| clinicians | 0.7812 | 0.790 [0.780, 0.800] |"), "{table}");
        assert!(table.contains("| 1234 / 3000 | 0.3% | 0.2% | 0.5% | 12.1% | 94.8% |"), "{table}");
        assert!(table.contains("| optimal (oracle upper bound) | 0.8750 |"), "{table}");
    }

    #[test]
    fn errors_table_reports_signed_error_and_coverage() {
        let table = estimator_errors(&[row("a", 0.80, 0.805, false), row("b", 0.80, 0.75, false)]);
        assert!(table.contains("| a | 0.8000 | +0.005 (covered) |"), "{table}");
        assert!(table.contains("| b | 0.8000 | -0.050 (not covered) |"), "{table}");
        assert!(table.contains("| mean absolute error | | 0.028 |"), "{table}");
    }
}
