//! Worker code, run in a real dedicated worker in headless Chromium
//! (`make test-wasm`; `webdriver.json` enables WebGPU, served by SwiftShader).
#![cfg(target_arch = "wasm32")]

use sepsis_core::compute::{max_abs_diff, BackendKind, LinearProblem, PARITY_TOLERANCE};
use sepsis_core::protocol::{ErrorKind, Event, EventBody, ModelProgress, ModelSource, Request, RequestBody};
use sepsis_worker::gpu::{choose_backend, GpuContext};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{MessageChannel, MessageEvent};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// Send a value through a real MessageChannel (structured clone, as
/// `postMessage` between app and worker does) and decode it on the far side.
async fn through_message_channel<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let channel = MessageChannel::new().unwrap();
    let (sender, receiver) = futures_channel::oneshot::channel::<JsValue>();
    let sender = std::cell::RefCell::new(Some(sender));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
        if let Some(sender) = sender.borrow_mut().take() {
            let _ = sender.send(message.data());
        }
    });
    channel.port2().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    channel.port1().post_message(&serde_wasm_bindgen::to_value(value).unwrap()).unwrap();
    let received = receiver.await.unwrap();
    serde_wasm_bindgen::from_value(received).unwrap()
}

#[wasm_bindgen_test]
async fn requests_survive_postmessage_unchanged() {
    for body in [RequestBody::ProbeBackend, RequestBody::LoadModels, RequestBody::DiagnosticPanic] {
        let request = Request { id: 42, body };
        assert_eq!(through_message_channel(&request).await, request);
    }
}

#[wasm_bindgen_test]
async fn events_survive_postmessage_unchanged() {
    let events = [
        Event { id: None, body: EventBody::Ready { worker_version: "0.1.0".into() } },
        Event::reply(3, EventBody::ModelProgress(ModelProgress {
            file: "model.gguf".into(),
            loaded_bytes: 98_362_432,
            total_bytes: 98_362_432,
            source: ModelSource::Network,
        })),
        Event::error(Some(4), ErrorKind::ModelVerification, "SHA-256 mismatch"),
        Event::reply(5, EventBody::Done),
    ];
    for event in events {
        assert_eq!(through_message_channel(&event).await, event);
    }
}

#[wasm_bindgen_test]
async fn wgsl_linear_kernel_matches_candle_on_cpu() {
    let gpu = GpuContext::new().await.expect("WebGPU adapter (run with --enable-unsafe-webgpu)");
    let problem = LinearProblem::probe();
    let on_gpu = gpu.linear(&problem).await.unwrap();
    let on_cpu = problem.reference().unwrap();
    let diff = max_abs_diff(&on_gpu, &on_cpu);
    assert!(diff <= PARITY_TOLERANCE, "max |gpu - cpu| = {diff}");
    // And the check the worker uses to choose its backend agrees.
    let check = gpu.linear_parity_check().await.unwrap();
    assert!(check.passed);
}

#[wasm_bindgen_test]
async fn backend_choice_picks_webgpu_when_the_kernel_matches() {
    let report = choose_backend().await;
    assert_eq!(report.chosen, BackendKind::WebGpu, "{}", report.reason);
    let adapter = report.adapter.expect("adapter summary");
    assert!(adapter.limits.max_storage_buffer_binding_size > 0);
    assert!(adapter.limits.max_compute_invocations_per_workgroup >= 64);
}

#[wasm_bindgen_test]
fn candle_in_wasm_matches_the_plain_loop() {
    let problem = LinearProblem::probe();
    assert!(max_abs_diff(&problem.reference().unwrap(), &problem.naive()) <= PARITY_TOLERANCE);
}

#[wasm_bindgen_test]
fn the_llm_q8_kernel_with_simd128_matches_the_exact_product() {
    let worst = sepsis_core::llm::q8_matmul::parity_with_exact_product().unwrap();
    assert!(worst <= sepsis_core::llm::q8_matmul::PARITY_TOLERANCE, "worst relative difference {worst}");
}

/// The browser's matmul against a plain loop, over shapes with partial panels
/// and row blocks; `make test` runs this file in the baseline and the
/// relaxed-SIMD (fused multiply-add) build.
#[wasm_bindgen_test]
fn the_browser_matmul_matches_the_plain_loop() {
    use sepsis_core::world_model::wasm_matmul::PackedWeights;
    let value = |i: usize| ((i * 7919 % 1000) as f32 / 500.0) - 1.0;
    for (rows, inputs, outputs) in [(1, 3, 1), (3, 57, 7), (4, 8, 8), (5, 57, 9), (7, 16, 13), (9, 128, 66), (25, 64, 192)] {
        let x: Vec<f32> = (0..rows * inputs).map(value).collect();
        let weight_t: Vec<f32> = (0..inputs * outputs).map(|i| value(i + 13)).collect();
        let bias: Vec<f32> = (0..outputs).map(|i| value(i + 5)).collect();
        let fused = PackedWeights::pack(&weight_t, &bias, inputs, outputs).apply(&x);
        assert_eq!(fused.len(), rows * outputs);
        for r in 0..rows {
            for c in 0..outputs {
                let plain = bias[c] + (0..inputs).map(|k| x[r * inputs + k] * weight_t[k * outputs + c]).sum::<f32>();
                let got = fused[r * outputs + c];
                assert!((got - plain).abs() <= 1e-5 * (1.0 + plain.abs()), "{rows}x{inputs}x{outputs} at ({r}, {c}): {got} against {plain}");
            }
        }
    }
}

/// The world model as shipped, and the native run of the fixed simulation
/// (`core/tests/simulation_fixture.rs` writes it).
const WEIGHTS: &[u8] = include_bytes!("../../public/models/world-model.safetensors");
const CARD: &str = include_str!("../../public/models/world-model.json");
const FIXTURE: &str = include_str!("../../core/tests/fixtures/simulation.json");
/// wasm against native: the same candle code, different SIMD.
const WASM_NATIVE_TOLERANCE: f64 = 1e-5;
/// WebGPU against the CPU: our WGSL kernels against candle.
const GPU_CPU_TOLERANCE: f64 = 1e-4;

#[derive(serde::Deserialize)]
struct Fixture {
    request: sepsis_core::simulation::SimulateRequest,
    simulation: sepsis_core::simulation::Simulation,
}

#[wasm_bindgen_test]
fn the_cpu_simulation_in_wasm_matches_native() {
    use sepsis_core::world_model::simulate::{parity_diff, simulate_on_cpu};
    let fixture: Fixture = serde_json::from_str(FIXTURE).unwrap();
    let model = sepsis_core::world_model::WorldModel::from_bytes(CARD, WEIGHTS.to_vec()).unwrap();
    let in_wasm = simulate_on_cpu(&model, fixture.request, |_| {}).unwrap();
    let diff = parity_diff(&model.card, &fixture.simulation, &in_wasm);
    assert!(diff <= WASM_NATIVE_TOLERANCE, "wasm differs from native by {diff}");
}

#[wasm_bindgen_test]
async fn the_webgpu_simulation_matches_the_cpu() {
    use sepsis_core::world_model::simulate::{draw, parity_diff, simulate_on_cpu, CpuForward, Rollout};
    use sepsis_worker::gpu_world_model::{simulate_on_gpu, GpuWorldModel, StepPlan};
    let fixture: Fixture = serde_json::from_str(FIXTURE).unwrap();
    let model = sepsis_core::world_model::WorldModel::from_bytes(CARD, WEIGHTS.to_vec()).unwrap();
    let gpu = GpuContext::new().await.expect("WebGPU adapter (run with --enable-unsafe-webgpu)");
    let on_gpu_model = GpuWorldModel::upload(&gpu, WEIGHTS, &model.card).unwrap();

    // Two steps, raw (the context, then one carried step): every member's
    // stay logits, means, log sigmas, outcome logits and draws. Both paths continue from
    // the CPU's draws, so the second step compares the carried states alone.
    let mut rollout = Rollout::new(&model.card, fixture.request.clone()).unwrap();
    let plan = StepPlan::new(&gpu, &on_gpu_model, rollout.rows(), rollout.steps());
    let mut forward = CpuForward::new(&model);
    for step in 1..=2 {
        let (outputs, draws) = plan.run(&gpu, &rollout).await.unwrap();
        let cpu_outputs = forward.feed_all(&rollout).unwrap();
        let mut cpu_draws = Vec::new();
        for (m, cpu) in cpu_outputs.iter().enumerate() {
            let cpu_draw = draw(cpu, rollout.seed(), rollout.counter_base(m));
            for (name, a, b) in [
                ("stay logit", &outputs[m].stay_logit, &cpu.stay_logit),
                ("mean", &outputs[m].mean, &cpu.mean),
                ("log sigma", &outputs[m].log_sigma, &cpu.log_sigma),
                ("outcome logit", &outputs[m].outcome_logit, &cpu.outcome_logit),
                ("draws", &draws[m], &cpu_draw),
            ] {
                assert_eq!(a.len(), b.len(), "{name}");
                let diff = max_abs_diff(a, b) as f64;
                assert!(diff <= GPU_CPU_TOLERANCE, "step {step} member {m} {name}: max |gpu - cpu| = {diff}");
            }
            cpu_draws.push(cpu_draw);
        }
        rollout.advance(&cpu_outputs, &cpu_draws);
    }

    // The whole six-step simulation, streamed step by step.
    let mut streamed = 0;
    let on_gpu = simulate_on_gpu(&gpu, &on_gpu_model, &model.card, fixture.request.clone(), |_| streamed += 1).await.unwrap();
    assert_eq!(streamed, fixture.request.horizon);
    let on_cpu = simulate_on_cpu(&model, fixture.request.clone(), |_| {}).unwrap();
    let diff = parity_diff(&model.card, &on_cpu, &on_gpu);
    assert!(diff <= GPU_CPU_TOLERANCE, "WebGPU simulation differs from the CPU by {diff}");

    // Requests reuse the plan kept for their shape: after another shape ran,
    // the same request gives the same simulation to the last bit. (Small
    // requests: on SwiftShader in a debug build each simulated step is slow.)
    let small = sepsis_core::simulation::SimulateRequest { samples: 2, horizon: 2, ..fixture.request };
    let other_shape = sepsis_core::simulation::SimulateRequest { samples: 3, ..small.clone() };
    let fresh = simulate_on_gpu(&gpu, &on_gpu_model, &model.card, small.clone(), |_| {}).await.unwrap();
    simulate_on_gpu(&gpu, &on_gpu_model, &model.card, other_shape, |_| {}).await.unwrap();
    let kept = simulate_on_gpu(&gpu, &on_gpu_model, &model.card, small, |_| {}).await.unwrap();
    assert_eq!(kept, fresh, "a kept plan gave another simulation");
}
