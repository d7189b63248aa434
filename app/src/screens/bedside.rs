//! Bedside entry: one new patient's values now and 4 h ago, typed in with
//! units and plausible ranges shown, checked as they are typed. On opening,
//! the entries are written as cohort CSV rows and read by the same reader
//! as an uploaded file, so the patient is exactly what a file would give;
//! its outcome is "unknown" (still in care). Nothing leaves the device.

use leptos::prelude::*;
use sepsis_core::action::LEVELS;
use sepsis_core::cohort::csv_format::{read_cohort, FLUID_LEVEL, OUTCOME, PATIENT_ID, STEP, VASO_LEVEL};
use sepsis_core::cohort::schema::{Feature, Kind, FEATURES};

use crate::state::{AppState, Screen, Selection};

/// The entry columns: the earlier step (optional) and the current one.
const WHEN: [&str; 2] = ["4 h ago", "now"];
const FILE: &str = "bedside entry";

/// What is wrong with one typed value, if anything (empty = not measured).
pub fn check_value(feature: &Feature, text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return (!feature.missing_allowed).then(|| "required".to_string());
    }
    let Ok(value) = text.parse::<f64>() else { return Some(format!("{text:?} is not a number")) };
    let (low, high) = feature.plausible;
    if !(low..=high).contains(&value) {
        return Some(format!("expected {low}–{high} {}", feature.unit));
    }
    (feature.integer && value.fract() != 0.0).then(|| "expected a whole number".to_string())
}

/// The entries as cohort CSV: a row for 4 h ago when anything was entered
/// for it, then the row for now. Static values go on every row.
fn to_csv(id: &str, values: &[[String; 2]], actions: [(u8, u8); 2]) -> String {
    let earlier = FEATURES.iter().zip(values).any(|(f, v)| f.kind == Kind::Dynamic && !v[0].trim().is_empty());
    let mut header: Vec<&str> = vec![PATIENT_ID, STEP];
    header.extend(FEATURES.iter().map(|f| f.key));
    header.extend([FLUID_LEVEL, VASO_LEVEL, OUTCOME]);
    let mut lines = vec![header.join(",")];
    let columns: &[usize] = if earlier { &[0, 1] } else { &[1] };
    for (step, &when) in columns.iter().enumerate() {
        let mut cells = vec![id.replace(',', " "), step.to_string()];
        cells.extend(FEATURES.iter().zip(values).map(|(f, v)| if f.kind == Kind::Static { v[1].trim() } else { v[when].trim() }.to_string()));
        let (fluid, vaso) = actions[when];
        let last = step + 1 == columns.len();
        cells.extend([fluid.to_string(), vaso.to_string(), if last { "unknown".into() } else { String::new() }]);
        lines.push(cells.join(","));
    }
    lines.join("\n") + "\n"
}

#[component]
pub fn BedsideScreen() -> impl IntoView {
    let state = expect_context::<AppState>();
    let id = RwSignal::new("bedside-1".to_string());
    let values = RwSignal::new(vec![[String::new(), String::new()]; FEATURES.len()]);
    let actions = RwSignal::new([(0u8, 0u8); 2]);
    let problems = RwSignal::new(Vec::<String>::new());
    let any_invalid = move || values.with(|v| FEATURES.iter().zip(v).any(|(f, v)| (f.kind == Kind::Dynamic && !v[0].trim().is_empty() && check_value(f, &v[0]).is_some()) || check_value(f, &v[1]).is_some()));
    let open = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let patient_id = id.get_untracked().trim().to_string();
        if patient_id.is_empty() {
            problems.set(vec!["Give the patient a de-identified id (no names or record numbers).".into()]);
            return;
        }
        let text = values.with_untracked(|v| to_csv(&patient_id, v, actions.get_untracked()));
        let (cohort, report) = read_cohort(FILE, text.as_bytes());
        if !report.is_clean() {
            problems.set(report.problems.iter().map(|p| p.to_string()).collect());
            return;
        }
        problems.set(Vec::new());
        let Some(patient) = cohort.patients.into_iter().next() else { return };
        let step = patient.steps.len() - 1;
        state.cohort.update(|c| {
            c.cohort.patients.retain(|p| p.id != patient.id);
            c.cohort.patients.insert(0, patient.clone());
        });
        state.what_if.set(Vec::new());
        state.selection.set(Some(Selection { patient: patient.id, step }));
        state.screen.set(Screen::Patient);
    };
    let rows = FEATURES
        .iter()
        .enumerate()
        .map(|(i, feature)| {
            let inputs = (0..2)
                .map(|when| {
                    if feature.kind == Kind::Static && when == 0 {
                        return view! { <td></td> }.into_any();
                    }
                    let error = move || values.with(|v| if when == 0 && v[i][0].trim().is_empty() { None } else { check_value(feature, &v[i][when]) });
                    let field = format!("bedside-{}-{when}", feature.key);
                    let message_id = format!("{field}-error");
                    view! {
                        <td>
                            <input
                                type="text"
                                inputmode="decimal"
                                id=field.clone()
                                data-test=field
                                aria-label=format!("{} {} ({})", feature.label, WHEN[when], feature.unit)
                                aria-invalid=move || error().is_some().to_string()
                                aria-describedby=message_id.clone()
                                prop:value=move || values.with(|v| v[i][when].clone())
                                on:input=move |e| values.update(|v| v[i][when] = event_target_value(&e))
                            />
                            <span class="field-error" id=message_id role="status">{error}</span>
                        </td>
                    }
                    .into_any()
                })
                .collect_view();
            let (low, high) = feature.plausible;
            view! {
                <tr>
                    <th scope="row">{feature.label}{(!feature.missing_allowed).then_some(" *")}</th>
                    <td class="hint">{format!("{} · {low}–{high}", if feature.unit.is_empty() { "no unit" } else { feature.unit })}</td>
                    {inputs}
                </tr>
            }
        })
        .collect_view();
    let level_select = move |when: usize, vaso: bool| {
        let label = format!("{} {}", if vaso { "Vasopressor level" } else { "IV fluid level" }, WHEN[when]);
        let options = (0..LEVELS).map(|l| view! { <option value=l.to_string()>{l.to_string()}</option> }).collect_view();
        view! {
            <select aria-label=label data-test=format!("bedside-{}-{when}", if vaso { "vaso" } else { "fluid" })
                on:change=move |e| {
                    let level = event_target_value(&e).parse::<u8>().unwrap_or(0);
                    actions.update(|a| if vaso { a[when].1 = level } else { a[when].0 = level });
                }>
                {options}
            </select>
        }
    };
    view! {
        <section class="card wide" data-test="bedside-screen">
            <h2>"Bedside entry"</h2>
            <p class="note">"Enter a patient's values now and, if known, 4 hours ago. * required. Empty means not measured. Ranges are the plausible values the cohort format accepts. The patient opens like one from a cohort file, with outcome unknown; nothing is sent anywhere."</p>
            <form on:submit=open>
                <label>"De-identified patient id " <input type="text" data-test="bedside-id" prop:value=move || id.get() on:input=move |e| id.set(event_target_value(&e))/></label>
                <table class="bedside">
                    <thead><tr><th scope="col">"Value"</th><th scope="col">"Unit · plausible range"</th><th scope="col">{WHEN[0]}</th><th scope="col">{WHEN[1]}</th></tr></thead>
                    <tbody>
                        {rows}
                        <tr><th scope="row">"IV fluid level (0–4) given"</th><td class="hint">"level per 4 h"</td><td>{level_select(0, false)}</td><td>{level_select(1, false)}</td></tr>
                        <tr><th scope="row">"Vasopressor level (0–4) given"</th><td class="hint">"level"</td><td>{level_select(0, true)}</td><td>{level_select(1, true)}</td></tr>
                    </tbody>
                </table>
                <button type="submit" class="primary" data-test="bedside-open" disabled=any_invalid>"Open this patient"</button>
                {move || any_invalid().then(|| view! { <span class="field-error">" Correct the marked values first."</span> })}
            </form>
            <ul class="problems" data-test="bedside-problems">{move || problems.get().into_iter().map(|p| view! { <li class="error">{p}</li> }).collect_view()}</ul>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sepsis_core::cohort::schema::idx;

    #[test]
    fn values_are_checked_against_the_schema() {
        let map = &FEATURES[idx("map")];
        assert_eq!(check_value(map, ""), Some("required".into()));
        assert_eq!(check_value(map, "abc"), Some("\"abc\" is not a number".into()));
        assert_eq!(check_value(map, "400"), Some("expected 10–250 mmHg".into()));
        assert_eq!(check_value(map, "62"), None);
        assert_eq!(check_value(&FEATURES[idx("sofa")], "7.5"), Some("expected a whole number".into()));
        assert_eq!(check_value(&FEATURES[idx("lactate")], ""), None);
    }

    #[test]
    fn entries_read_back_as_the_same_patient_a_file_gives() {
        let mut values = vec![[String::new(), String::new()]; FEATURES.len()];
        for (key, earlier, now) in [("map", "70", "58"), ("hr", "100", "112"), ("lactate", "", "4.1")] {
            values[idx(key)] = [earlier.into(), now.into()];
        }
        values[idx("age_years")][1] = "67".into();
        values[idx("sex_male")][1] = "1".into();
        let text = to_csv("bed-3", &values, [(2, 0), (0, 0)]);
        let (cohort, report) = read_cohort(FILE, text.as_bytes());
        assert!(report.is_clean(), "{:?}", report.problems);
        let patient = &cohort.patients[0];
        assert_eq!(patient.steps.len(), 2);
        assert_eq!(patient.steps[1].value("map"), Some(58.0));
        assert_eq!(patient.steps[0].value("lactate"), None);
        assert_eq!(patient.steps[0].value("age_years"), Some(67.0));
        assert_eq!(patient.outcome, sepsis_core::cohort::Outcome::Unknown);
    }
}
