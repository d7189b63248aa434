//! The browser's WebGPU kernels (`src/kernels/*.wgsl`, driven by
//! `gpu_world_model.rs`) on a real GPU, natively through wgpu's Vulkan
//! backend, next to candle on the CPU of the same machine in the same run.
//!
//! The sweep is the one `core/benches/simulate.rs` times: 25 candidates x 5
//! members x 16 samples x 6 steps from the reference patient, each step one
//! command buffer and one readback, as in the worker. Before timing, the GPU
//! simulation must match the CPU's within the browser's parity tolerance, so
//! a fast but wrong driver cannot report a figure.
//!
//! Run on a machine with a Vulkan driver (docs/benchmarks.md says how it ran
//! on the lent GPU machine): `cargo bench -p sepsis-worker --bench gpu_simulate`.
//! Without an adapter it says so and times nothing. `SEPSIS_WORLD_MODEL`
//! names another model stem (the compiled-in path is this checkout's
//! `public/models/world-model`, which a binary copied elsewhere lacks).

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::PathBuf;

    use criterion::{Criterion, Throughput};
    use futures_executor::block_on;
    use sepsis_core::simulation::{reference_course, SimulateRequest};
    use sepsis_core::world_model::simulate::{parity_diff, simulate_on_cpu};
    use sepsis_core::world_model::WorldModel;
    use sepsis_worker::gpu::GpuContext;
    use sepsis_worker::gpu_world_model::{simulate_on_gpu, GpuWorldModel};

    /// The browser tests' WebGPU-against-CPU tolerance (`tests/in_worker.rs`).
    const GPU_CPU_TOLERANCE: f64 = 1e-4;

    fn model_stem() -> PathBuf {
        std::env::var_os("SEPSIS_WORLD_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../public/models/world-model")))
    }

    pub fn full_sweep(c: &mut Criterion) {
        let stem = model_stem();
        let model = WorldModel::load(&stem).unwrap_or_else(|e| panic!("world model at {}: {e}", stem.display()));
        let weights = std::fs::read(stem.with_extension("safetensors")).expect("world-model weights");
        let gpu = match block_on(GpuContext::new()) {
            Ok(gpu) => gpu,
            Err(reason) => {
                eprintln!("gpu_simulate: no Vulkan adapter ({reason}); nothing timed");
                return;
            }
        };
        let info = &gpu.adapter_info;
        eprintln!(
            "gpu_simulate: adapter {:?} ({:?}, backend {:?}, driver {:?} {:?})",
            info.name, info.device_type, info.backend, info.driver, info.driver_info
        );
        let on_gpu_model = GpuWorldModel::upload(&gpu, &weights, &model.card).expect("weights upload");

        let request = SimulateRequest::full_sweep(reference_course(), 6, 16, 1);
        let on_gpu = block_on(simulate_on_gpu(&gpu, &on_gpu_model, &model.card, request.clone(), |_| {})).expect("GPU simulation");
        let on_cpu = simulate_on_cpu(&model, request.clone(), |_| {}).expect("CPU simulation");
        let diff = parity_diff(&model.card, &on_cpu, &on_gpu);
        assert!(diff <= GPU_CPU_TOLERANCE, "the GPU sweep differs from the CPU's by {diff} (> {GPU_CPU_TOLERANCE})");
        eprintln!("gpu_simulate: full sweep on the GPU matches the CPU within {diff:.2e}");
        where_the_time_goes(&gpu, &on_gpu_model, &model, &request);

        let patient_steps = (request.candidates.len() * model.card.config.members * request.samples * request.horizon) as u64;
        let threads = candle_core::utils::get_num_threads();
        let mut group = c.benchmark_group("world-model-gpu");
        group.throughput(Throughput::Elements(patient_steps));
        group.sample_size(30);
        group.bench_function("full-sweep/wgpu-vulkan", |b| {
            b.iter(|| block_on(simulate_on_gpu(&gpu, &on_gpu_model, &model.card, request.clone(), |_| {})).expect("GPU simulation"))
        });
        group.bench_function(format!("full-sweep/candle-cpu/{threads}-threads"), |b| {
            b.iter(|| simulate_on_cpu(&model, request.clone(), |_| {}).expect("CPU simulation"))
        });
        group.finish();
    }

    /// Split a sweep's time between setting up its plan (building its buffers
    /// and launches, and dropping them after; a kept plan saves both), the
    /// GPU's steps (inputs up, launches, readback) and the rollout's own work
    /// on the CPU between them (draws kept or not, quantiles, next inputs),
    /// over 20 sweeps: which part a faster sweep has to come from.
    fn where_the_time_goes(gpu: &GpuContext, on_gpu_model: &GpuWorldModel, model: &WorldModel, request: &SimulateRequest) {
        use sepsis_core::world_model::simulate::Rollout;
        use sepsis_worker::gpu_world_model::StepPlan;
        use std::time::{Duration, Instant};
        let (mut setting_up, mut on_gpu, mut on_cpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let sweeps = 20;
        for _ in 0..sweeps {
            let start = Instant::now();
            let mut rollout = Rollout::new(&model.card, request.clone()).expect("request");
            let plan = StepPlan::new(gpu, on_gpu_model, rollout.rows(), rollout.steps());
            setting_up += start.elapsed();
            while !rollout.is_done() {
                let start = Instant::now();
                let (outputs, draws) = block_on(plan.run(gpu, &rollout)).expect("GPU step");
                let between = Instant::now();
                rollout.advance(&outputs, &draws);
                on_gpu += between - start;
                on_cpu += between.elapsed();
            }
            let start = Instant::now();
            drop(plan);
            setting_up += start.elapsed();
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / sweeps as f64;
        eprintln!(
            "gpu_simulate: a sweep spends {:.2} ms setting up, {:.2} ms in the GPU's steps and {:.2} ms in the rollout's CPU work (mean of {sweeps})",
            ms(setting_up),
            ms(on_gpu),
            ms(on_cpu)
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_group!(benches, native::full_sweep);
#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
