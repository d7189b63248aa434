//! Evaluation: exact values on ICU-Sepsis (and, as they land, off-policy
//! estimates and safety metrics).

#[cfg(all(feature = "llm", feature = "eval"))]
pub mod agent_policy;
pub mod ceiling;
pub mod cohort_report;
pub mod exact;
pub mod ope;
#[cfg(feature = "ml")]
pub mod planner_diagnosis;
#[cfg(feature = "ml")]
pub mod planner_sensitivity;
pub mod policies;
pub mod results_file;
pub mod safety;
pub mod scoreboard;
