//! The cohort report: a policy decides at every step of the loaded cohort's
//! patients, in the worker, and its decisions are set beside what the
//! clinicians did: off-policy estimates of survival with 95% intervals,
//! safety and guideline rates, where they agree, and both action
//! distributions. Progress shows while it runs and it can be cancelled; the
//! result exports as JSON or prints.

use leptos::prelude::*;
use serde::Serialize;
use sepsis_core::action::{Action, LEVELS};
use sepsis_core::cohort::{Cohort, Outcome};
use sepsis_core::protocol::{AgentKind, CohortReportRequest, ReportDecider, RequestBody};
use sepsis_core::report::{CohortReport, SafetyRates};

use super::export::{download, print, NOTICE};
use crate::components::charts::{viridis, BLUE, GREEN, ORANGE};
use crate::components::report_charts::{IntervalPlot, IntervalRow, PairedBars, PairedRate};
use crate::state::{AppState, ModelStatus, ReportRun, Screen};
use crate::Link;

/// Patients an LLM agent reports on by default: it takes seconds per step.
const AGENT_PATIENTS: usize = 5;

/// The deciders offered, with their form value and label.
const DECIDERS: [(&str, &str, ReportDecider); 3] = [
    ("planner", "World-model planner (wm-mpc, the agent's teacher): seconds for the whole cohort", ReportDecider::Planner),
    ("agent-no-sim", "Trained agent without simulation: one LLM decision per step, seconds each", ReportDecider::Agent(AgentKind::AgentNoSim)),
    ("agent", "Trained agent with simulation: a whole propose-simulate-refine decision per step, seconds each", ReportDecider::Agent(AgentKind::Agent)),
];

fn decider_of(value: &str) -> ReportDecider {
    DECIDERS.iter().find(|(v, _, _)| *v == value).map_or(ReportDecider::Planner, |(_, _, d)| *d)
}

/// The first `count` patients, in the cohort's order.
fn first_patients(cohort: &Cohort, count: usize) -> Cohort {
    Cohort { patients: cohort.patients.iter().take(count).cloned().collect() }
}

fn start_report(state: AppState, link: Link, decider: ReportDecider, count: usize) {
    let cohort = state.cohort.with_untracked(|c| first_patients(&c.cohort, count));
    let total = cohort.steps();
    let id = link.with_value(|l| l.send(RequestBody::CohortReport(CohortReportRequest { cohort, decider, seed: 1 })));
    state.report.set(ReportRun { request: Some(id), running: true, total, ..ReportRun::default() });
}

#[component]
pub fn ReportScreen() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let available = move || state.cohort.with(|c| c.cohort.patients.len());
    let choice = RwSignal::new("planner".to_string());
    let count = RwSignal::new(available());
    let set_choice = move |value: String| {
        count.set(if value == "planner" { available() } else { AGENT_PATIENTS.min(available()) });
        choice.set(value);
    };
    let unknown = move || state.cohort.with(|c| c.cohort.patients.iter().take(count.get()).filter(|p| p.outcome == Outcome::Unknown).count());
    let running = move || state.report.with(|r| r.running);
    let count_ok = move || (1..=available()).contains(&count.get());
    let can_run = move || !running() && state.models.get() == ModelStatus::Ready && count_ok();
    let options = DECIDERS.iter().map(|(value, label, _)| view! { <option value=*value>{*label}</option> }).collect_view();
    let progress = move || {
        state.report.with(|r| {
            (r.running || r.cancelled).then(|| {
                let text = if r.cancelled { format!("Cancelled after {} of {} decisions.", r.decided, r.total) } else { format!("Deciding: {} of {} steps", r.decided, r.total) };
                view! {
                    <div class="progress no-print" data-test="report-progress" role="status">
                        <progress max=r.total.max(1) value=r.decided></progress>
                        " " {text}
                    </div>
                }
            })
        })
    };
    view! {
        <section class="card wide" data-test="report-screen">
            <h2>"Cohort report"</h2>
            <p>
                "A policy decides at every 4-hour step of the loaded cohort's patients, here on this device, and its decisions are compared with what the clinicians actually gave: estimated survival under the policy (off-policy estimates from the logged outcomes, with 95 % intervals), guideline and safety rates of both, and where they differ."
            </p>
            {move || (available() == 0).then(|| view! {
                <p class="note" data-test="report-no-cohort">
                    "No cohort is loaded. "
                    <button type="button" on:click=move |_| state.screen.set(Screen::Cohort)>"Open the cohort screen"</button>
                    " to load the demo or a CSV first."
                </p>
            })}
            <div class="form-row no-print">
                <label for="report-decider">"Policy"</label>
                <select id="report-decider" data-test="report-decider" prop:value=move || choice.get() on:change=move |ev| set_choice(event_target_value(&ev))>
                    {options}
                </select>
            </div>
            <div class="form-row no-print">
                <label for="report-patients">{move || format!("Patients (the first of {} in the cohort)", available())}</label>
                <input id="report-patients" data-test="report-patients" type="number" min="1" max=available prop:value=move || count.get().to_string()
                    aria-invalid=move || (!count_ok() && available() > 0).to_string() aria-describedby="report-patients-error"
                    on:input=move |ev| count.set(event_target_value(&ev).parse().unwrap_or(0))/>
                <span id="report-patients-error" class="field-error" data-test="report-patients-error">
                    {move || (!count_ok() && available() > 0).then(|| format!("expected a whole number from 1 to {}", available()))}
                </span>
            </div>
            {move || (unknown() > 0).then(|| view! { <p class="note">{format!("{} of these patients are still in care (outcome unknown): their decisions are shown, but off-policy estimates need outcomes, so they are left out of those.", unknown())}</p> })}
            <div class="actions no-print">
                <button type="button" class="primary" data-test="report-run" disabled=move || !can_run()
                    on:click=move |_| start_report(state, link, decider_of(&choice.get_untracked()), count.get_untracked())>"Run the report"</button>
                <button type="button" data-test="report-cancel" disabled=move || !running() on:click=move |_| link.with_value(|l| l.cancel_report())>"Cancel"</button>
            </div>
            {progress}
        </section>
        {move || state.report.with(|r| r.result.clone()).map(|result| view! { <ReportResult report=result.0 elapsed_ms=result.1/> })}
    }
}

/// What the JSON export holds.
#[derive(Serialize)]
struct ReportExport<'a> {
    notice: &'static str,
    /// How the figures were computed (docs/cohort-report.md).
    method: &'static str,
    report: &'a CohortReport,
}

const METHOD: &str = "States: the AI Clinician's 750 clusters of the ICU-Sepsis training split. Behaviour policy: the cohort's own action frequencies per state. Evaluation policy: the share of the policy's decisions per state, softened by 1 % spread over all 25 actions. Estimators: weighted importance sampling (WIS), per-decision WIS (WPDIS) and weighted doubly robust (WDR, tabular FQE), 95 % percentile-bootstrap intervals over patients (200 resamples).";

#[component]
fn ReportResult(report: CohortReport, elapsed_ms: f64) -> impl IntoView {
    let policy = report.policy.clone();
    let survival = vec![
        IntervalRow { label: "Clinicians (observed)".into(), interval: report.clinicians_survival, color: ORANGE },
        IntervalRow { label: "Policy, WIS".into(), interval: report.ope.wis, color: BLUE },
        IntervalRow { label: "Policy, WDR".into(), interval: report.ope.dr, color: GREEN },
    ];
    let (given, chosen) = (report.clinicians.safety, report.policy_stats.safety);
    let rate = |label: &'static str, pick: fn(&SafetyRates) -> f64| PairedRate { label, clinicians: pick(&given), policy: pick(&chosen) };
    let safety = vec![
        rate("Unsafe (G1 + G2)", |s| s.unsafe_rate),
        rate("G1 under-treatment", |s| s.g1_rate),
        rate("G2 vasopressor raised", |s| s.g2_rate),
        rate("Out of support", |s| s.out_of_support_rate),
        rate("Guideline adherence (higher is better)", |s| s.guideline_adherence),
    ];
    let a = report.agreement;
    let percent = |v: f64| format!("{:.1} %", 100.0 * v);
    let interval_text = |i: sepsis_core::report::Interval| format!("{:.1} % ({:.1} to {:.1})", 100.0 * i.estimate, 100.0 * i.low, 100.0 * i.high);
    let estimates = [("Policy, WIS", report.ope.wis), ("Policy, WDR", report.ope.dr)]
        .into_iter()
        .map(|(name, i)| view! { <tr><th scope="row">{name}</th><td>{interval_text(i)}</td></tr> })
        .collect_view();
    let exported = report.clone();
    let export_json = move |_| {
        let body = ReportExport { notice: NOTICE, method: METHOD, report: &exported };
        if let Ok(text) = serde_json::to_string_pretty(&body) {
            let _ = download("cohort-report.json", "application/json", &text);
        }
    };
    view! {
        <section class="card wide report" data-test="report-result">
            <h3>{format!("{policy} vs the clinicians")}</h3>
            <p data-test="report-summary">
                {format!(
                    "{} patients, {} decisions in {} states; computed on this device in {:.1} s.{}",
                    report.patients,
                    report.decisions,
                    report.states,
                    elapsed_ms / 1000.0,
                    if report.unknown_outcome > 0 { format!(" {} patients still in care were left out.", report.unknown_outcome) } else { String::new() }
                )}
            </p>
            <IntervalPlot title="Survival: clinicians observed, policy estimated" rows=survival/>
            <table class="values" data-test="report-estimates">
                <caption>"Estimated survival under the policy (95 % interval)"</caption>
                <tbody>
                    <tr><th scope="row">"Clinicians, observed"</th><td data-test="report-clinicians-survival">{interval_text(report.clinicians_survival)}</td></tr>
                    {estimates}
                    <tr><th scope="row">"Effective sample size (WIS)"</th><td>{format!("{:.1} of {} patients", report.ope.ess, report.ope.episodes)}</td></tr>
                </tbody>
            </table>
            <p class="note">
                "How to read this: the estimates re-weight the logged patients whose treatment resembles the policy's. A small effective sample size means few patients carry the estimate and the interval is wide. On ICU-Sepsis, where every policy's true value is known, these two estimators' intervals covered the truth for most policies (docs/results.md); per-decision WIS did not, so it is only in the JSON export. Estimates are for research comparison, not proof that a policy is better."
            </p>
            <PairedBars title="Safety and guidelines" rows=safety colors=(ORANGE, BLUE) names=("clinicians", policy.clone())/>
            <p data-test="report-agreement">
                {format!(
                    "Same treatment as the clinician in {}; more fluid in {}, less in {}; more vasopressor in {}, less in {}.",
                    percent(a.same_action),
                    percent(a.more_fluid),
                    percent(a.less_fluid),
                    percent(a.more_vasopressor),
                    percent(a.less_vasopressor)
                )}
            </p>
            <div class="action-shares">
                <ActionShares title="Clinicians' treatments" counts=report.clinicians.actions.clone() test="report-actions-clinicians"/>
                <ActionShares title="Policy's treatments" counts=report.policy_stats.actions.clone() test="report-actions-policy"/>
            </div>
            <p class="note">{METHOD}</p>
            <div class="actions no-print">
                <button type="button" data-test="report-export-json" on:click=export_json>"Download report (JSON)"</button>
                <button type="button" data-test="report-print" on:click=move |_| print()>"Print report"</button>
            </div>
        </section>
    }
}

/// A 5 x 5 fluid-by-vasopressor table of the share of decisions, shaded by share.
#[component]
fn ActionShares(title: &'static str, counts: Vec<u32>, test: &'static str) -> impl IntoView {
    let total = counts.iter().sum::<u32>().max(1) as f64;
    let most = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let header = (0..LEVELS).map(|v| view! { <th scope="col">{format!("vaso {v}")}</th> }).collect_view();
    let rows = (0..LEVELS)
        .map(|fluid| {
            let cells = (0..LEVELS)
                .map(|vaso| {
                    let n = counts.get(Action { fluid, vaso }.index()).copied().unwrap_or(0) as f64;
                    let t = n / most;
                    view! {
                        <td class="share" style:background-color=viridis(t) style:color=if t < 0.6 { "#fff" } else { "#000" }>
                            {format!("{:.0}", 100.0 * n / total)}
                        </td>
                    }
                })
                .collect_view();
            view! { <tr><th scope="row">{format!("fluid {fluid}")}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <table class="shares" data-test=test>
            <caption>{title} " " <span class="unit">"(% of decisions)"</span></caption>
            <thead><tr><td></td>{header}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
