//! SepsisAgent Web domain crate.
//!
//! The browser-safe part (always compiled) holds what the app, the worker and
//! the CLI share: the app/worker [`protocol`], the model [`manifest`] and the
//! compute-backend report types and reference inputs in [`compute`].
//! Browser-safe too: the [`cohort`] schema and CSV format, the treatment
//! [`action`] grid and the [`guideline`] checks.
//! The `ml` feature adds the candle-based computation used by the worker and
//! the native `sepsis` command-line tool; `eval` adds evaluation on the
//! ICU-Sepsis MDP ([`env`], [`eval`], [`policy`], [`baselines`]).

pub mod action;
pub mod agent;
#[cfg(feature = "eval")]
pub mod baselines;
pub mod cohort;
pub mod compute;
#[cfg(all(feature = "llm", feature = "eval"))]
pub mod curriculum;
#[cfg(feature = "eval")]
pub mod env;
#[cfg(feature = "eval")]
pub mod eval;
#[cfg(feature = "ml")]
pub mod gguf;
pub mod guideline;
#[cfg(feature = "llm")]
pub mod llm;
pub mod manifest;
#[cfg(all(feature = "ml", feature = "eval"))]
pub mod nn_init;
#[cfg(feature = "ml")]
pub mod planner;
#[cfg(feature = "eval")]
pub mod policy;
pub mod protocol;
pub mod report;
pub mod simulation;
#[cfg(feature = "ml")]
pub mod world_model;
