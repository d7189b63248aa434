//! The cohort: the embedded demo by default, or a CSV the user picks or
//! drops. The worker validates it; problems are listed by row and column
//! with the offending value, and the valid patients stay usable. The file
//! is read in the browser and never uploaded.

use leptos::prelude::*;
use sepsis_core::cohort::{Outcome, Patient};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::patient::outcome_text;
use crate::course::course_until;
use crate::state::{AppState, CohortState, ModelStatus, Screen, Selection};
use crate::Link;

/// The demo cohort shipped with the app (simulated ICU-Sepsis patients).
pub const DEMO_FILE: &str = "demo/icu-sepsis-demo.csv";
/// Rows of the patient list drawn at once; search narrows the rest.
const LIST_ROWS: usize = 100;
/// Problems listed in full; the count says how many more.
const PROBLEM_ROWS: usize = 50;

/// Send a cohort's text to the worker to be read.
pub fn load_cohort(state: AppState, link: Link, file: String, text: String) {
    state.cohort.update(|c| c.loading = Some(file.clone()));
    state.selection.set(None);
    link.with_value(|l| l.send(sepsis_core::protocol::RequestBody::LoadCohort { file, text }));
}

/// Fetch the demo file from this app's own server and load it.
pub fn open_demo(state: AppState, link: Link) {
    state.screen.set(Screen::Cohort);
    if state.cohort.with_untracked(|c| c.report.as_ref().is_some_and(|r| r.file == DEMO_FILE) || c.loading.is_some()) {
        return;
    }
    state.cohort.update(|c| c.loading = Some(DEMO_FILE.into()));
    wasm_bindgen_futures::spawn_local(async move {
        match fetch_text(DEMO_FILE).await {
            Ok(text) => load_cohort(state, link, DEMO_FILE.into(), text),
            Err(e) => {
                state.cohort.update(|c| c.loading = None);
                state.errors.update(|list| {
                    list.push(sepsis_core::protocol::WorkerError { kind: sepsis_core::protocol::ErrorKind::Network, message: format!("the demo cohort could not be read ({e}); reload the page") })
                });
            }
        }
    });
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("{e:?}"))?.unchecked_into();
    if !response.ok() {
        return Err(format!("HTTP {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
    text.as_string().ok_or_else(|| "not text".into())
}

/// Read a file the user chose (in the browser) and load it.
fn load_file(state: AppState, link: Link, file: web_sys::File) {
    let name = file.name();
    wasm_bindgen_futures::spawn_local(async move {
        match JsFuture::from(file.text()).await.ok().and_then(|t| t.as_string()) {
            Some(text) => load_cohort(state, link, name, text),
            None => state.errors.update(|list| {
                list.push(sepsis_core::protocol::WorkerError { kind: sepsis_core::protocol::ErrorKind::InvalidRequest, message: format!("{name} could not be read as text: choose a CSV file") })
            }),
        }
    });
}

/// Values of a patient's newest step, for the list.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    id: String,
    steps: usize,
    sofa: Option<f64>,
    lactate: Option<f64>,
    map: Option<f64>,
    /// Predicted probability of dying (world model), once computed.
    risk: Option<f64>,
    outcome: Outcome,
}

impl Row {
    fn of(patient: &Patient, survival: Option<f64>) -> Self {
        let last = patient.steps.last();
        let value = |key: &str| last.and_then(|s| s.value(key));
        Self { id: patient.id.clone(), steps: patient.steps.len(), sofa: value("sofa"), lactate: value("lactate"), map: value("map"), risk: survival.map(|s| 1.0 - s), outcome: patient.outcome }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Id,
    SofaHigh,
    LactateHigh,
    MapLow,
    RiskHigh,
    StepsMost,
}

impl SortBy {
    const ALL: [(SortBy, &'static str, &'static str); 6] = [
        (SortBy::SofaHigh, "sofa", "SOFA, highest first"),
        (SortBy::RiskHigh, "risk", "Predicted risk, highest first"),
        (SortBy::LactateHigh, "lactate", "Lactate, highest first"),
        (SortBy::MapLow, "map", "MAP, lowest first"),
        (SortBy::StepsMost, "steps", "Steps, most first"),
        (SortBy::Id, "id", "Patient id"),
    ];

    fn from_key(key: &str) -> Self {
        Self::ALL.iter().find(|(_, k, _)| *k == key).map(|(s, _, _)| *s).unwrap_or(SortBy::SofaHigh)
    }

    fn sort(self, rows: &mut [Row]) {
        // Missing values sort last whichever the direction.
        let desc = |v: Option<f64>| -v.unwrap_or(f64::NEG_INFINITY);
        match self {
            SortBy::Id => rows.sort_by(|a, b| a.id.cmp(&b.id)),
            SortBy::SofaHigh => rows.sort_by(|a, b| desc(a.sofa).total_cmp(&desc(b.sofa))),
            SortBy::LactateHigh => rows.sort_by(|a, b| desc(a.lactate).total_cmp(&desc(b.lactate))),
            SortBy::RiskHigh => rows.sort_by(|a, b| desc(a.risk).total_cmp(&desc(b.risk))),
            SortBy::MapLow => rows.sort_by(|a, b| a.map.unwrap_or(f64::INFINITY).total_cmp(&b.map.unwrap_or(f64::INFINITY))),
            SortBy::StepsMost => rows.sort_by_key(|r| std::cmp::Reverse(r.steps)),
        }
    }
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "—".into())
}

#[component]
pub fn CohortScreen() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <section class="card wide" data-test="cohort-screen">
            <h2>"Cohort"</h2>
            <CohortSource/>
            {move || state.cohort.with(|c| c.report.clone()).map(|report| view! { <CohortReport report=report/> })}
            <PatientList/>
        </section>
    }
}

#[component]
fn CohortSource() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let input = NodeRef::<leptos::html::Input>::new();
    let dragging = RwSignal::new(false);
    let on_pick = move |_| {
        if let Some(file) = input.get().and_then(|i| i.files()).and_then(|files| files.get(0)) {
            load_file(state, link, file);
        }
    };
    let on_drop = move |event: web_sys::DragEvent| {
        event.prevent_default();
        dragging.set(false);
        if let Some(file) = event.data_transfer().and_then(|d| d.files()).and_then(|files| files.get(0)) {
            load_file(state, link, file);
        }
    };
    view! {
        <div
            class="drop-zone"
            class:dragging=move || dragging.get()
            data-test="cohort-drop"
            on:dragover=move |e: web_sys::DragEvent| { e.prevent_default(); dragging.set(true); }
            on:dragleave=move |_| dragging.set(false)
            on:drop=on_drop
        >
            <p>
                "Drop a cohort CSV here, or "
                <label class="file-pick">
                    "choose a file"
                    <input type="file" accept=".csv,text/csv" node_ref=input data-test="cohort-file" on:change=on_pick/>
                </label>
                ". It is read in this browser and never uploaded. The format is in docs/data.md (one row per patient and 4-hour step, clinical units)."
            </p>
            <button type="button" data-test="open-demo" on:click=move |_| {
                state.cohort.set(CohortState::default());
                open_demo(state, link);
            }>"Use the demo cohort"</button>
            {move || state.cohort.with(|c| c.loading.clone()).map(|file| view! { <p class="progress" data-test="cohort-loading">{format!("Reading {file}…")}</p> })}
        </div>
    }
}

#[component]
fn CohortReport(report: sepsis_core::cohort::csv_format::Report) -> impl IntoView {
    let shown: Vec<_> = report.problems.iter().take(PROBLEM_ROWS).cloned().collect();
    let more = report.problems.len().saturating_sub(PROBLEM_ROWS);
    let rows = shown
        .into_iter()
        .map(|p| {
            view! {
                <tr data-test="cohort-problem">
                    <td>{p.row.map(|r| r.to_string()).unwrap_or_else(|| "file".into())}</td>
                    <td>{p.column.clone().unwrap_or_default()}</td>
                    <td><code>{p.value.clone().unwrap_or_default()}</code></td>
                    <td>{p.expected.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let excluded = report.patients_excluded.len();
    let clean = report.is_clean();
    view! {
        <div class="cohort-report" data-test="cohort-report">
            <p data-test="cohort-summary">
                {format!(
                    "{}: {} patients loaded ({} of {} rows).",
                    report.file, report.patients_loaded, report.rows_loaded, report.rows_read
                )}
                {(excluded > 0).then(|| format!(" {excluded} patients set aside because some of their rows have problems; fix those rows and load the file again."))}
            </p>
            <Show when=move || !clean>
                <table class="problems">
                    <caption>"Problems found (line numbers count the header as line 1)"</caption>
                    <thead><tr><th>"Line"</th><th>"Column"</th><th>"Value"</th><th>"Expected"</th></tr></thead>
                    <tbody>{rows.clone()}</tbody>
                </table>
                {(more > 0).then(|| view! { <p>{format!("…and {more} more problems.")}</p> })}
            </Show>
        </div>
    }
}

#[component]
fn PatientList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let search = RwSignal::new(String::new());
    let sort = RwSignal::new(SortBy::SofaHigh);
    let rows = Memo::new(move |_| state.cohort.with(|c| c.cohort.patients.iter().map(|p| Row::of(p, c.survival.get(&p.id).copied())).collect::<Vec<_>>()));
    // Once the models are ready, the world model ranks the patients whose
    // risk is not known yet (one request at a time).
    Effect::new(move |_| {
        if state.models.get() != ModelStatus::Ready {
            return;
        }
        let missing = state.cohort.with(|c| {
            (c.survival_request.is_none()).then(|| c.cohort.patients.iter().filter(|p| !c.survival.contains_key(&p.id)).map(|p| (p.id.clone(), course_until(p, p.steps.len() - 1))).collect::<Vec<_>>())
        });
        let Some(missing) = missing.filter(|m| !m.is_empty()) else { return };
        let (ids, courses): (Vec<String>, Vec<_>) = missing.into_iter().unzip();
        let request = link.with_value(|l| l.send(sepsis_core::protocol::RequestBody::PredictRisks { courses }));
        state.cohort.update(|c| c.survival_request = Some((request, ids)));
    });
    let shown = move || {
        let needle = search.get().trim().to_lowercase();
        let mut rows: Vec<Row> = rows.get().into_iter().filter(|r| needle.is_empty() || r.id.to_lowercase().contains(&needle)).collect();
        sort.get().sort(&mut rows);
        rows
    };
    let open = move |id: String, steps: usize| {
        state.what_if.set(Vec::new());
        state.selection.set(Some(Selection { patient: id, step: steps - 1 }));
        state.screen.set(Screen::Patient);
    };
    let options = SortBy::ALL.iter().map(|(_, key, label)| view! { <option value=*key>{*label}</option> }).collect_view();
    view! {
        <Show when=move || rows.with(|r| !r.is_empty())>
            <div class="list-controls">
                <label>"Search by id " <input type="search" data-test="patient-search" prop:value=move || search.get() on:input=move |e| search.set(event_target_value(&e))/></label>
                <label>"Sort by " <select data-test="patient-sort" on:change=move |e| sort.set(SortBy::from_key(&event_target_value(&e)))>{options.clone()}</select></label>
                <span>{move || { let n = shown().len(); if n > LIST_ROWS { format!("{n} patients; the first {LIST_ROWS} are listed") } else { format!("{n} patients") } }}</span>
            </div>
            <table class="patients" data-test="patient-list">
                <thead><tr><th>"Patient"</th><th>"Steps (4 h)"</th><th>"SOFA"</th><th>"Lactate, mmol/L"</th><th>"MAP, mmHg"</th><th>"Predicted risk of death"</th><th>"Outcome"</th><th></th></tr></thead>
                <tbody>
                    {move || shown().into_iter().take(LIST_ROWS).map(|row| {
                        let (id, steps) = (row.id.clone(), row.steps);
                        view! {
                            <tr data-test="patient-row" data-patient=row.id.clone()>
                                <td>{row.id.clone()}</td>
                                <td>{row.steps}</td>
                                <td>{cell(row.sofa, 0)}</td>
                                <td>{cell(row.lactate, 1)}</td>
                                <td>{cell(row.map, 0)}</td>
                                <td data-test="patient-risk">{row.risk.map(|r| format!("{:.0} %", 100.0 * r)).unwrap_or_else(|| "…".into())}</td>
                                <td>{outcome_text(row.outcome)}</td>
                                <td><button type="button" data-test="open-patient" on:click=move |_| open(id.clone(), steps)>"Open"</button></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </Show>
    }
}
