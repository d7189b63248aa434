//! The propose-simulate-refine agent: what it reads ([`observation`]), the
//! tool calls it writes ([`grammar`]), and the loop that runs a decision.

pub mod grammar;
pub mod observation;
pub mod decision;
#[cfg(feature = "eval")]
pub mod mdp_simulator;
#[cfg(feature = "ml")]
pub mod runtime;
