//! The fixed simulation the browser's parity tests compare against
//! (`worker/tests/in_worker.rs`): a demo-cohort patient, five candidates,
//! six steps, four samples. Run natively here; `UPDATE_FIXTURES=1` rewrites
//! the file after the world model is retrained.

use sepsis_core::action::Action;
use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::simulation::{CourseStep, SimulateRequest, Simulation};
use sepsis_core::world_model::simulate::{parity_diff, simulate_on_cpu};
use sepsis_core::world_model::WorldModel;
use serde::{Deserialize, Serialize};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/simulation.json");
/// Native runs of the same code agree to float rounding.
const TOLERANCE: f64 = 1e-5;

#[derive(Serialize, Deserialize)]
struct Fixture {
    request: SimulateRequest,
    simulation: Simulation,
}

fn request() -> SimulateRequest {
    let path = format!("{ROOT}/public/demo/icu-sepsis-demo.csv");
    let (cohort, report) = read_cohort("icu-sepsis-demo.csv", std::fs::File::open(&path).unwrap());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let patient = cohort.patients.iter().find(|p| p.steps.len() >= 3).expect("a patient with three steps");
    SimulateRequest {
        history: patient.steps[..3].iter().map(|s| CourseStep { values: s.values.clone(), action: s.action }).collect(),
        candidates: [(0, 0), (2, 0), (4, 0), (1, 2), (3, 4)].iter().map(|&(fluid, vaso)| vec![Action { fluid, vaso }]).collect(),
        horizon: 6,
        samples: 4,
        seed: 2026,
    }
}

#[test]
fn the_parity_fixture_matches_a_native_run() {
    let model = WorldModel::load(std::path::Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let request = request();
    let simulation = simulate_on_cpu(&model, request.clone(), |_| {}).unwrap();
    if std::env::var_os("UPDATE_FIXTURES").is_some() || !std::path::Path::new(FIXTURE).exists() {
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&Fixture { request, simulation }).unwrap()).unwrap();
        return;
    }
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    assert_eq!(fixture.request, request, "the fixture's request is out of date: rerun with UPDATE_FIXTURES=1");
    let diff = parity_diff(&model.card, &fixture.simulation, &simulation);
    assert!(diff <= TOLERANCE, "native simulation moved by {diff} from the fixture (retrained? rerun with UPDATE_FIXTURES=1)");
}
