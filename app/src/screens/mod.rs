//! The app's views, one per screen, switched by `AppState::screen`.

mod bedside;
mod checks;
mod cohort;
mod export;
mod patient;
mod plan;
mod recommend;
mod report;
mod start;
mod treatment_grid;

pub use bedside::BedsideScreen;
pub use checks::ChecksScreen;
pub use cohort::CohortScreen;
pub use patient::PatientScreen;
pub use report::ReportScreen;
pub use start::StartScreen;
