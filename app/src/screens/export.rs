//! Export, made locally: the printable report is the page under the print
//! stylesheet (window.print), and the trace is a JSON file built here and
//! handed to the browser as a download from a blob: URL. Nothing is sent.

use serde::Serialize;
use sepsis_core::action::Action;
use sepsis_core::protocol::Recommended;
use sepsis_core::simulation::CourseStep;
use wasm_bindgen::JsCast;

/// What the JSON export holds: enough to audit the decision later.
#[derive(Serialize)]
pub struct TraceExport<'a> {
    pub notice: &'static str,
    pub patient: &'a str,
    /// 0-based step the decision was asked for.
    pub step: usize,
    /// The course the agent saw (values in schema order; see docs/cohort-format.md).
    pub course: &'a [CourseStep],
    pub clinician_action: Action,
    pub recommendation: &'a Recommended,
}

pub const NOTICE: &str = "SepsisAgent Web: research decision support, not a medical device. Simulated evidence for clinicians to weigh, never orders.";

/// Offer `text` as a file named `name` (a blob: URL; nothing leaves the device).
pub fn download(name: &str, mime: &str, text: &str) -> Result<(), String> {
    let parts = js_sys::Array::of1(&text.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let anchor: web_sys::HtmlAnchorElement = document.create_element("a").map_err(|e| format!("{e:?}"))?.unchecked_into();
    anchor.set_href(&url);
    anchor.set_download(name);
    anchor.click();
    web_sys::Url::revoke_object_url(&url).map_err(|e| format!("{e:?}"))
}

pub fn print() {
    if let Some(window) = web_sys::window() {
        let _ = window.print();
    }
}
