//! Browser benchmark (not a test: `make bench` runs it, `make test` does
//! not): the world model's full candidate sweep in a dedicated worker in
//! headless Chromium, on the CPU path (wasm SIMD, one thread; `make bench`
//! runs it in the baseline and the relaxed-SIMD build) and on the WebGPU path. Prints one JSON line per path; `scripts/bench.sh` puts
//! them in docs/benchmarks.md. Built only with `--features browser-bench`.
#![cfg(all(target_arch = "wasm32", feature = "browser-bench"))]

use sepsis_core::simulation::{reference_course, SimulateRequest};
use sepsis_core::world_model::simulate::{simulate_on_cpu, CpuForward, Rollout};
use sepsis_core::world_model::WorldModel;
use sepsis_worker::gpu::{describe_adapter, GpuContext};
use sepsis_worker::gpu_world_model::{simulate_on_gpu, GpuWorldModel};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const WEIGHTS: &[u8] = include_bytes!("../../public/models/world-model.safetensors");
const CARD: &str = include_str!("../../public/models/world-model.json");
/// `make bench` runs this file in the worker's baseline and relaxed-SIMD
/// builds (scripts/build-relaxed-worker.sh).
#[cfg(not(target_feature = "relaxed-simd"))]
const CPU_ENGINE: &str = "candle-wasm-cpu";
#[cfg(not(target_feature = "relaxed-simd"))]
const CPU_DEVICE: &str = "browser CPU (wasm SIMD, 1 thread)";
#[cfg(target_feature = "relaxed-simd")]
const CPU_ENGINE: &str = "candle-wasm-cpu-relaxed";
#[cfg(target_feature = "relaxed-simd")]
const CPU_DEVICE: &str = "browser CPU (wasm relaxed SIMD, 1 thread)";
const PATIENT_STEPS_PER_SWEEP: f64 = (25 * 5 * 16 * 6) as f64;

fn now_ms() -> f64 {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).unwrap();
    let now: js_sys::Function = js_sys::Reflect::get(&performance, &"now".into()).unwrap().into();
    now.call0(&performance).unwrap().as_f64().unwrap()
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn report(path: &str, device: &str, times: Vec<f64>) {
    let n = times.len();
    let sweep_ms = median(times);
    console_log!(
        "BENCH {}",
        serde_json::json!({ "engine": path, "device": device, "threads": 1, "sweep_ms": sweep_ms,
            "patient_steps_per_s": PATIENT_STEPS_PER_SWEEP / (sweep_ms / 1000.0), "iterations": n })
    );
}

/// Of a CPU sweep, how much is the networks' forward pass and how much the
/// rollout's own work (the draws, the stay decisions, the bands): the medians
/// of 5 sweeps, each part summed over the sweep's steps.
fn where_the_time_goes(model: &WorldModel, request: &SimulateRequest) {
    let (mut forward_ms, mut rollout_ms) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut rollout = Rollout::new(&model.card, request.clone()).unwrap();
        let mut forward = CpuForward::new(model);
        let (mut in_forward, mut in_rollout) = (0.0, 0.0);
        while !rollout.is_done() {
            let start = now_ms();
            let outputs = forward.feed_all(&rollout).unwrap();
            let between = now_ms();
            rollout.draw_and_advance(&outputs);
            in_forward += between - start;
            in_rollout += now_ms() - between;
        }
        forward_ms.push(in_forward);
        rollout_ms.push(in_rollout);
    }
    console_log!("BENCH {}", serde_json::json!({ "engine": CPU_ENGINE, "split": { "forward_ms": median(forward_ms), "rollout_ms": median(rollout_ms) } }));
}

/// One projection of the sweep's commonest shape (400 rows x 128 inputs x
/// 384 outputs: a GRU's recurrent gates), best of 100: gemm's simd128
/// kernel, which candle uses, and ours (`core/src/world_model/wasm_matmul.rs`)
/// as this build compiles it.
fn projection_kernels() {
    use sepsis_core::world_model::cpu_inference::gemm_multiply_add;
    use sepsis_core::world_model::wasm_matmul::PackedWeights;
    let (rows, inputs, outputs) = (400, 128, 384);
    let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 13) as f32 * 0.01).collect();
    let weight_t: Vec<f32> = (0..inputs * outputs).map(|i| (i % 7) as f32 * 0.01).collect();
    let packed = PackedWeights::pack(&weight_t, &vec![0.0; outputs], inputs, outputs);
    let best = |run: &dyn Fn(&mut [f32])| {
        (0..100)
            .map(|_| {
                let mut out = vec![0.0f32; rows * outputs];
                let start = now_ms();
                run(&mut out);
                let ms = now_ms() - start;
                std::hint::black_box(&out);
                ms
            })
            .fold(f64::MAX, f64::min)
    };
    let gemm_ms = best(&|out: &mut [f32]| gemm_multiply_add(&weight_t, inputs, outputs, &x, out));
    // Ours writes a new result (from a zero bias); gemm adds into `out`.
    let ours_ms = best(&|_: &mut [f32]| {
        std::hint::black_box(packed.apply(&x));
    });
    for (kernel, ms) in [("gemm (simd128)", gemm_ms), ("ours", ours_ms)] {
        console_log!("BENCH {}", serde_json::json!({ "engine": CPU_ENGINE, "kernel": kernel, "shape": [rows, inputs, outputs], "best_ms": ms,
            "multiply_adds_per_s": (rows * inputs * outputs) as f64 / (ms / 1000.0) }));
    }
}

#[wasm_bindgen_test]
async fn full_sweep_in_the_browser() {
    let model = WorldModel::from_bytes(CARD, WEIGHTS.to_vec()).unwrap();
    let request = SimulateRequest::full_sweep(reference_course(), 6, 16, 1);

    simulate_on_cpu(&model, request.clone(), |_| {}).unwrap(); // warm-up
    let times: Vec<f64> = (0..10)
        .map(|_| {
            let start = now_ms();
            simulate_on_cpu(&model, request.clone(), |_| {}).unwrap();
            now_ms() - start
        })
        .collect();
    report(CPU_ENGINE, CPU_DEVICE, times);
    where_the_time_goes(&model, &request);
    projection_kernels();
    if cfg!(target_feature = "relaxed-simd") {
        return; // the WebGPU path is the same in both builds: timed once
    }

    let Ok(Some(adapter)) = describe_adapter().await else {
        console_log!("BENCH {}", serde_json::json!({ "engine": "wgsl-webgpu", "skipped": "no WebGPU adapter" }));
        return;
    };
    if adapter.is_fallback {
        // SwiftShader emulates a GPU on the CPU, 20-100x slower than candle
        // (toolchain.md): a sweep would take minutes and say nothing about
        // GPU speed. Its correctness is in `make test-wasm`.
        console_log!("BENCH {}", serde_json::json!({ "engine": "wgsl-webgpu", "skipped": "software adapter (SwiftShader): correctness only, see the parity tests; timed on a real GPU only" }));
        return;
    }
    let gpu = GpuContext::new().await.unwrap();
    let on_gpu = GpuWorldModel::upload(&gpu, WEIGHTS, &model.card).unwrap();
    simulate_on_gpu(&gpu, &on_gpu, &model.card, request.clone(), |_| {}).await.unwrap(); // warm-up
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = now_ms();
        simulate_on_gpu(&gpu, &on_gpu, &model.card, request.clone(), |_| {}).await.unwrap();
        times.push(now_ms() - start);
    }
    let device = format!("{} {}{}", adapter.vendor, adapter.description, if adapter.is_fallback { " (software fallback)" } else { "" });
    report("wgsl-webgpu", device.trim(), times);
}
