//! What the agent reads: the system prompt with the protocol rules and the
//! tools, the patient's recent course in clinical units, and simulation
//! results. Compact and deterministic: the same course always renders to the
//! same text, so decisions can be cached by prompt.

use serde::{Deserialize, Serialize};

use crate::action::{Action, N_ACTIONS};
use crate::cohort::schema::idx;
use crate::guideline::{violations, Rule, Situation, LACTATE_RAISED, MAP_TARGET};
use crate::simulation::CourseStep;

use super::grammar::render_action;

/// Steps of history shown (4 h each). Every digit is a token: each step
/// shown costs about 30 tokens of prompt the browser must read.
pub const SHOWN_STEPS: usize = 3;

const ROLE_AND_RULES: &str = "You treat sepsis in the ICU, one decision every 4 hours: an IV fluid level and a vasopressor level, each 0 (none) to 4 (very high).
Rules, with their flags: G1 if lactate > 2 mmol/L or MAP < 65 mmHg, never give nothing. G2 do not raise the vasopressor when MAP is already >= 65. R1 at admission with lactate >= 4 or MAP < 65, give fluid. R2 avoid the highest fluid level when the balance is over 10 L and MAP >= 75. R3 avoid the highest vasopressor level when MAP > 95.
Each patient: age, sex, weight, ventilation, hours in ICU, then one line per 4 h, oldest first: time, MAP mmHg, HR /min, lactate mmol/L, urine mL/4h, SOFA, fluid balance L, treatment given (? = to decide now).";

/// What the agent's user turn shows. An adapter is served the format it
/// was trained on (it records it, [`crate::llm::model::LoraAdapter`]); the
/// base model reads the course alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObservationFormat {
    /// The patient's recent course.
    #[default]
    Course,
    /// The course, then the treatments clinicians gave often in logged
    /// states like the patient's now (the planner's support). Why: the
    /// teacher proposes only such treatments, and which ones they are is
    /// barely visible in the course (docs/training.md, "The run on the new
    /// teacher": an imitator that could not see them proposed nothing).
    CourseAndLoggedPractice,
}

impl ObservationFormat {
    /// How the adapter file stores it (a one-element tensor, like its alpha).
    pub fn code(self) -> u8 {
        match self {
            Self::Course => 0,
            Self::CourseAndLoggedPractice => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Course, Self::CourseAndLoggedPractice].into_iter().find(|f| f.code() == code)
    }

    /// What [`render_observation`] is given: the practice where this
    /// format shows it.
    pub fn shown(self, logged: &LoggedPractice) -> Option<&LoggedPractice> {
        (self == Self::CourseAndLoggedPractice).then_some(logged)
    }

    /// What [`system_prompt`] is given: the support threshold (the support
    /// model's, `AiClinician::min_support`) where this format shows practice.
    pub fn practice_threshold(self, min_support: u32) -> Option<u32> {
        (self == Self::CourseAndLoggedPractice).then_some(min_support)
    }
}

/// What clinicians did in logged states like the patient's now (the AI
/// Clinician's cluster): how often they gave each action, by
/// [`Action::index`], and how often an action must have been given there to
/// be in support (the support model's threshold, which grows with the
/// cohort: `action::support_threshold`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedPractice {
    pub counts: [u32; N_ACTIONS],
    pub min_support: u32,
}

impl LoggedPractice {
    pub fn supported(&self, action: Action) -> bool {
        self.counts[action.index()] >= self.min_support
    }

    /// The actions in support, in the grid's order.
    pub fn supported_actions(&self) -> impl Iterator<Item = Action> + '_ {
        Action::all().filter(|&a| self.supported(a))
    }
}

/// The role, the protocol rules and how a patient's course is written: the
/// start of every system prompt the agent's LLM reads.
pub fn role_and_rules() -> &'static str {
    ROLE_AND_RULES
}

/// The system prompt: role, protocol rules, what the user turn shows, and
/// the tools offered. `practice`: the support threshold where the user turn
/// shows the logged practice ([`ObservationFormat::practice_threshold`]).
pub fn system_prompt(can_simulate: bool, practice: Option<u32>) -> String {
    let rules = match practice {
        None => ROLE_AND_RULES.to_string(),
        Some(min_support) => format!(
            "{ROLE_AND_RULES}
Then the treatments clinicians gave at least {min_support} times in similar logged states, most often first (times given); others are out of support."
        ),
    };
    if can_simulate {
        format!(
            "{rules}
Simulate your candidates first, then prescribe. Tools, one per turn, after one short thought:
<simulate>vaso=V fluid=F; ...</simulate> predicts 4 h ahead for up to 3 candidates: median (10-90% range) of MAP, lactate and SOFA, survival, model spread, flags of broken rules.
<prescribe>vaso=V fluid=F</prescribe> gives the treatment and ends the decision.
Distrust a simulated recovery without treatment and perfect results at maximum doses; prefer what was simulated with little spread."
        )
    } else {
        format!(
            "{rules}
After one short thought, give the treatment:
<prescribe>vaso=V fluid=F</prescribe>"
        )
    }
}

/// Values shown per step, in the order the system prompt names them.
pub const COLUMNS: [&str; 6] = ["map", "hr", "lactate", "urine_ml_4h", "sofa", "fluid_balance_ml"];

fn value(values: &[Option<f64>], key: &str) -> String {
    match values[idx(key)] {
        None => "-".to_string(),
        Some(v) if key == "lactate" => format!("{v:.1}"),
        Some(v) if key == "fluid_balance_ml" => format!("{:.1}", v / 1000.0),
        Some(v) => format!("{v:.0}"),
    }
}

/// The user turn for a decision: who the patient is, the last steps, the
/// logged practice where the format shows it (`logged`: Some exactly then),
/// and what is asked.
pub fn render_observation(course: &[CourseStep], can_simulate: bool, logged: Option<&LoggedPractice>) -> String {
    let practice = logged.map(practice_line).unwrap_or_default();
    render_course(course, None) + &practice + if can_simulate { "Simulate, then prescribe." } else { "Prescribe." }
}

/// "Clinicians gave: vaso=0 fluid=4 x31, vaso=0 fluid=0 x25.": the
/// treatments in support (given at least `min_support` times), most often
/// first (ties in the grid's order).
pub fn practice_line(logged: &LoggedPractice) -> String {
    let mut shown: Vec<(Action, u32)> = logged.supported_actions().map(|a| (a, logged.counts[a.index()])).collect();
    shown.sort_by_key(|&(action, times)| (std::cmp::Reverse(times), action.index()));
    if shown.is_empty() {
        return format!("Clinicians gave each treatment fewer than {} times.\n", logged.min_support);
    }
    let list: Vec<String> = shown.iter().map(|&(action, times)| format!("{} x{times}", render_action(action))).collect();
    format!("Clinicians gave: {}.\n", list.join(", "))
}

/// Who the patient is and the last steps, one line each; the newest step's
/// treatment is `now_given`, or "?" (to decide now).
pub fn render_course(course: &[CourseStep], now_given: Option<Action>) -> String {
    let newest = course.last().expect("a course has at least one step");
    let v = &newest.values;
    let sex = match v[idx("sex_male")] {
        Some(x) if x >= 0.5 => "male",
        Some(_) => "female",
        None => "sex unknown",
    };
    // Column titles and units are in the system prompt (read once).
    let mut text = format!(
        "{} y, {sex}, {} kg, {}, {} h in ICU.\n",
        value(v, "age_years"),
        value(v, "weight_kg"),
        if v[idx("mechvent")] == Some(1.0) { "ventilated" } else { "not ventilated" },
        4 * (course.len() - 1)
    );
    let shown = &course[course.len().saturating_sub(SHOWN_STEPS)..];
    for (i, step) in shown.iter().enumerate() {
        let hours_ago = 4 * (shown.len() - 1 - i);
        let time = if hours_ago == 0 { "now".to_string() } else { format!("-{hours_ago}h") };
        let given = match (hours_ago, now_given) {
            (0, None) => "?".to_string(),
            (0, Some(action)) => render_action(action),
            _ => render_action(step.action),
        };
        text += &format!("{time} {} {given}\n", step_cells(&step.values));
    }
    text
}

/// One step's shown values, space-separated, in the system prompt's order.
pub fn step_cells(values: &[Option<f64>]) -> String {
    COLUMNS.iter().map(|key| value(values, key)).collect::<Vec<_>>().join(" ")
}

/// How a first thought names the patient's state ("MAP low, lactate
/// high"): the teacher's words, and the words faithful decoding writes for
/// the agent (`runtime::Decoding`), so neither can misstate the values.
pub fn situation_words(situation: &Situation) -> String {
    let map = match situation.map {
        Some(m) if m < MAP_TARGET => "MAP low",
        Some(_) => "MAP at target",
        None => "MAP unknown",
    };
    let lactate = match situation.lactate {
        Some(l) if l > LACTATE_RAISED => "lactate high",
        Some(_) => "lactate normal",
        None => "lactate unknown",
    };
    format!("{map}, {lactate}")
}

/// The guideline rules a candidate breaks now, as the system prompt's flag
/// codes ("none").
pub fn flags(situation: &Situation, action: Action) -> String {
    let broken = violations(situation, action);
    if broken.is_empty() {
        return "none".into();
    }
    broken.iter().map(|r| rule_code(*r)).collect::<Vec<_>>().join(" ")
}

/// The flag code the system prompt gives each rule.
pub fn rule_code(rule: Rule) -> &'static str {
    match rule {
        Rule::UnderTreatment => "G1",
        Rule::VasopressorRaisedAtTarget => "G2",
        Rule::NoInitialResuscitation => "R1",
        Rule::FluidDespiteOverload => "R2",
        Rule::MaxVasopressorAtHighMap => "R3",
    }
}

/// The flag as people read it.
pub fn rule_flag(rule: Rule) -> &'static str {
    match rule {
        Rule::UnderTreatment => "G1 under-treatment",
        Rule::VasopressorRaisedAtTarget => "G2 vasopressor raised at target",
        Rule::NoInitialResuscitation => "no initial fluid",
        Rule::FluidDespiteOverload => "fluid despite overload",
        Rule::MaxVasopressorAtHighMap => "max vasopressor at high MAP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::MIN_SUPPORT;
    use crate::simulation::reference_course;

    #[test]
    fn the_observation_is_compact_deterministic_and_in_clinical_units() {
        let course = reference_course();
        let text = render_observation(&course, true, None);
        assert_eq!(text, render_observation(&course, true, None));
        assert!(text.starts_with("67 y, male, "), "{text}");
        assert!(text.contains("\n-4h 58 "), "{text}");
        assert!(text.contains(" 4.1 "), "{text}");
        assert!(text.contains(" vaso=0 fluid=2\nnow 58 "), "{text}");
        assert!(text.ends_with("Simulate, then prescribe."));
        assert!(text.len() < 200, "{} characters", text.len());
        assert!(render_observation(&course, false, None).ends_with("\nPrescribe."));
        assert!(system_prompt(true, None).contains("<simulate>") && !system_prompt(false, None).contains("<simulate>"));
        // Only the last steps are shown.
        let long: Vec<CourseStep> = (0..5).flat_map(|_| reference_course()).collect();
        assert_eq!(render_observation(&long, true, None).matches('\n').count(), 1 + SHOWN_STEPS);
    }

    #[test]
    fn logged_practice_lists_the_supported_treatments_most_often_first() {
        let course = reference_course();
        let mut logged = LoggedPractice { counts: [0; N_ACTIONS], min_support: MIN_SUPPORT };
        logged.counts[Action::NONE.index()] = 25;
        logged.counts[Action { fluid: 4, vaso: 0 }.index()] = 31;
        logged.counts[Action { fluid: 1, vaso: 1 }.index()] = 25;
        logged.counts[Action { fluid: 2, vaso: 2 }.index()] = MIN_SUPPORT - 1;
        let text = render_observation(&course, true, Some(&logged));
        // Between the course and the question; below the threshold is not shown; ties in the grid's order.
        assert!(text.ends_with(" ?\nClinicians gave: vaso=0 fluid=4 x31, vaso=0 fluid=0 x25, vaso=1 fluid=1 x25.\nSimulate, then prescribe."), "{text}");
        assert_eq!(practice_line(&LoggedPractice { counts: [0; N_ACTIONS], min_support: 20 }), "Clinicians gave each treatment fewer than 20 times.\n");
        // The support model's threshold decides what is shown, and the system prompt states it.
        let strict = LoggedPractice { min_support: 30, ..logged };
        assert!(render_observation(&course, true, Some(&strict)).contains("\nClinicians gave: vaso=0 fluid=4 x31.\n"));
        assert!(system_prompt(true, Some(106)).contains("gave at least 106 times in similar logged states"));
        // Only a format that shows it explains it.
        let explains = |format: ObservationFormat| system_prompt(true, format.practice_threshold(20)).contains("similar logged states");
        assert!(explains(ObservationFormat::CourseAndLoggedPractice) && !explains(ObservationFormat::Course));
        assert!(system_prompt(false, Some(20)).starts_with(&system_prompt(false, None)[..ROLE_AND_RULES.len()]));
        for format in [ObservationFormat::Course, ObservationFormat::CourseAndLoggedPractice] {
            assert_eq!(ObservationFormat::from_code(format.code()), Some(format));
        }
    }

    #[test]
    fn flags_name_the_broken_rules() {
        let course = reference_course();
        let situation = Situation::of_course(&course);
        assert_eq!(flags(&situation, Action::NONE), "G1");
        assert_eq!(flags(&situation, Action { fluid: 2, vaso: 0 }), "none");
        for rule in Rule::ALL {
            assert!(system_prompt(true, None).contains(&format!("{} ", rule_code(rule))), "the system prompt explains {}", rule_code(rule));
        }
    }
}
