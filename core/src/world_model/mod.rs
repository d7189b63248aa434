//! The Clinical World Model: action-conditioned patient dynamics.
//!
//! Given a window of recent steps (features with missingness masks, statics,
//! and the treatment given), each ensemble member predicts a Gaussian over
//! the next step's per-step features (in z units) and the probability that
//! the patient dies by the end of the stay. Members are independently seeded;
//! their disagreement measures how far a question is from the data.
//! The design starts from the SepsisAgent paper's (2-layer GRU, hidden 128,
//! 6-step window).

pub mod card;
pub mod cpu_inference;
pub mod data;
pub mod ensemble;
#[cfg(feature = "eval")]
pub mod evaluate;
#[cfg(feature = "eval")]
pub mod fidelity;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod wasm_matmul;
pub mod memory;
pub mod mixture;
pub mod model;
pub mod simulate;
#[cfg(feature = "eval")]
pub mod train;

pub use data::{Layout, Windows};
pub use crate::cohort::normaliser::Normaliser;
pub use ensemble::{History, WorldModel};
pub use model::{Member, WorldModelConfig};
