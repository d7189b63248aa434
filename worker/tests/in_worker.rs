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
