use leptos::prelude::*;

use crate::state::AppState;

#[component]
pub fn ErrorList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let restarts = move || {
        state.restarts.get().into_iter().map(|reason| {
            view! { <li data-test="restart-notice">{format!("The worker stopped ({reason}) and was restarted. Work in progress was lost; start it again.")}</li> }
        }).collect_view()
    };
    let errors = move || {
        state.errors.get().into_iter().map(|e| {
            view! { <li data-test="error" data-kind=format!("{:?}", e.kind)>{format!("{:?}: {}", e.kind, e.message)}</li> }
        }).collect_view()
    };
    view! {
        <Show when=move || !state.errors.get().is_empty() || !state.restarts.get().is_empty()>
            <section class="card errors" role="alert" aria-labelledby="errors-title" data-test="errors">
                <h2 id="errors-title">"Problems"</h2>
                <ul>{restarts}{errors}</ul>
            </section>
        </Show>
    }
}
