use leptos::prelude::*;

#[component]
pub fn PrivacyStatement() -> impl IntoView {
    view! {
        <section class="card privacy" aria-labelledby="privacy-title" data-test="privacy">
            <h2 id="privacy-title">"Patient data stays on this device"</h2>
            <p>
                "Everything runs inside this browser tab: the models are downloaded once from this site, "
                "checked against their published SHA-256, and kept in the browser's cache. "
                "Cohort files and patient values you enter are processed in a local web worker and are "
                "never uploaded. The page's Content-Security-Policy only allows connections to this site."
            </p>
        </section>
    }
}
