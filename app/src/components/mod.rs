//! UI components, one concern each.

mod agent_check;
pub mod charts;
pub mod report_charts;
mod compute;
mod diagnostics;
mod errors;
mod model;
mod privacy;
mod simulation_check;

pub use agent_check::AgentCheck;
pub use compute::ComputeStatus;
pub use diagnostics::Diagnostics;
pub use errors::ErrorList;
pub use model::ModelStatusPanel;
pub use privacy::PrivacyStatement;
pub use simulation_check::SimulationCheck;

/// Human-readable byte count (MB with one decimal above 1 MB).
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}
