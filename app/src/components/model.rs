use leptos::prelude::*;
use sepsis_core::protocol::ModelSource;

use super::format_bytes;
use crate::state::{AppState, ModelStatus};

#[component]
pub fn ModelStatusPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let status = move || match state.models.get() {
        ModelStatus::Waiting => view! { <p data-test="model-status" data-state="waiting">"Waiting for the worker…"</p> }.into_any(),
        ModelStatus::Loading(p) => {
            let verb = match p.source {
                ModelSource::Network => "Downloading",
                ModelSource::Cache => "Reading from this browser's cache:",
            };
            view! {
                <p data-test="model-status" data-state="loading">
                    {format!("{verb} {} — {} of {}", p.file, format_bytes(p.loaded_bytes), format_bytes(p.total_bytes))}
                </p>
                <progress data-test="model-progress" max=p.total_bytes.to_string() value=p.loaded_bytes.to_string()
                    aria-label="Model download progress"></progress>
            }
            .into_any()
        }
        ModelStatus::Ready => view! { <p data-test="model-status" data-state="ready">"Models verified and ready."</p> }.into_any(),
        ModelStatus::Failed(message) => view! {
            <p data-test="model-status" data-state="failed" class="error">
                {format!("Model not loaded: {message}. Reload the page to try again; if it keeps failing, the site's model files do not match its manifest.")}
            </p>
        }
        .into_any(),
    };
    let files = move || {
        state
            .verified
            .get()
            .into_iter()
            .map(|m| {
                let source = match m.source {
                    ModelSource::Network => "downloaded",
                    ModelSource::Cache => "from cache",
                };
                view! {
                    <li data-test="model-file" data-file=m.file.clone() data-source=source>
                        <strong>{m.file.clone()}</strong>
                        {format!(" — {}, {}, {source}; SHA-256 {}… verified", m.description, format_bytes(m.bytes), &m.sha256[..12])}
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <section class="card" aria-labelledby="model-title" data-test="models">
            <h2 id="model-title">"Models"</h2>
            {status}
            <ul class="files">{files}</ul>
        </section>
    }
}
