//! The world model's full candidate sweep with candle on the CPU: 25
//! candidates x 5 members x 16 samples x 6 steps from the reference patient
//! (`make bench` runs it with 1 and 2 threads and writes docs/benchmarks.md).
//! Simulated patient-steps per second = 25 x 5 x 16 x 6 = 12,000 per sweep
//! divided by the sweep time.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sepsis_core::simulation::{reference_course, SimulateRequest};
use sepsis_core::world_model::simulate::simulate_on_cpu;
use sepsis_core::world_model::WorldModel;

pub const PATIENT_STEPS_PER_SWEEP: u64 = 25 * 5 * 16 * 6;

fn full_sweep(c: &mut Criterion) {
    let stem = concat!(env!("CARGO_MANIFEST_DIR"), "/../public/models/world-model");
    let model = WorldModel::load(std::path::Path::new(stem)).expect("the shipped world model");
    let request = SimulateRequest::full_sweep(reference_course(), 6, 16, 1);
    let threads = candle_core::utils::get_num_threads();
    let mut group = c.benchmark_group("world-model");
    group.throughput(Throughput::Elements(PATIENT_STEPS_PER_SWEEP));
    group.sample_size(20);
    group.bench_function(format!("full-sweep/candle-cpu/{threads}-threads"), |b| {
        b.iter(|| simulate_on_cpu(&model, request.clone(), |_| {}).expect("simulation"))
    });
    group.finish();
}

criterion_group!(benches, full_sweep);
criterion_main!(benches);
