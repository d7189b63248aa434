//! Trained baselines: policies learnt only from a logged training cohort,
//! then judged on ICU-Sepsis like every other policy.

pub mod ai_clinician;
#[cfg(feature = "ml")]
pub mod ddqn;
pub mod kmeans;
