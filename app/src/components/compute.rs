use leptos::prelude::*;
use sepsis_core::compute::{BackendKind, BackendReport};

use super::format_bytes;
use crate::state::AppState;

#[component]
pub fn ComputeStatus() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <section class="card" aria-labelledby="compute-title" data-test="compute">
            <h2 id="compute-title">"Compute backend"</h2>
            {move || match state.backend.get() {
                None => view! { <p data-test="backend-pending">"Checking WebGPU…"</p> }.into_any(),
                Some(report) => view! { <BackendDetails report/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn BackendDetails(report: BackendReport) -> impl IntoView {
    let chosen = match report.chosen {
        BackendKind::WebGpu => "webgpu",
        BackendKind::Cpu | BackendKind::CpuRelaxedSimd => "cpu",
    };
    let adapter = report.adapter.clone().map(|a| {
        view! {
            <dl class="facts" data-test="adapter">
                <dt>"Adapter"</dt><dd>{a.display_name()}</dd>
                <dt>"Fallback (software) adapter"</dt><dd data-test="adapter-fallback">{if a.is_fallback { "yes" } else { "no" }}</dd>
                <dt>"shader-f16"</dt><dd>{if a.shader_f16 { "supported" } else { "not supported" }}</dd>
                <dt>"Max storage buffer binding"</dt><dd>{format_bytes(a.limits.max_storage_buffer_binding_size)}</dd>
                <dt>"Max buffer size"</dt><dd>{format_bytes(a.limits.max_buffer_size)}</dd>
                <dt>"Invocations per workgroup"</dt><dd>{a.limits.max_compute_invocations_per_workgroup}</dd>
                <dt>"Workgroup storage"</dt><dd>{format_bytes(a.limits.max_compute_workgroup_storage_size as u64)}</dd>
            </dl>
        }
    });
    let check = report.kernel_check.clone().map(|c| {
        view! {
            <p data-test="kernel-check" data-passed=c.passed.to_string()>
                {format!(
                    "Kernel check ({}, {} values): max |GPU − CPU| = {:.1e}, tolerance {:.0e} — {}",
                    c.kernel, c.elements, c.max_abs_diff, c.tolerance, if c.passed { "match" } else { "MISMATCH" }
                )}
            </p>
        }
    });
    view! {
        <p class="backend" data-test="backend" data-backend=chosen>
            <strong>{report.label()}</strong>
        </p>
        <p data-test="backend-reason">{format!("Why: {}", report.reason)}</p>
        {check}
        {adapter}
    }
}
