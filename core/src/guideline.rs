//! Machine-checkable treatment rules, applied to every candidate action (in
//! the app, the agent loop and evaluation alike). Sources: the SepsisAgent
//! paper's safety checks G1/G2, the Surviving Sepsis Campaign 2021 and the
//! AI Clinician hazards of Festor et al. (clinical-reference.md sections 1,
//! 3 and 4). docs/guidelines.md states each rule precisely.

use serde::{Deserialize, Serialize};

use crate::action::Action;

/// MAP target in mmHg (SSC 2021).
pub const MAP_TARGET: f64 = 65.0;
/// Lactate above this (mmol/L) counts as hypoperfusion for G1 (SepsisAgent).
pub const LACTATE_RAISED: f64 = 2.0;
/// Lactate at or above this (mmol/L) calls for initial fluid resuscitation (SSC 2021).
pub const LACTATE_RESUSCITATE: f64 = 4.0;
/// Cumulative balance above this (mL) is treated as a sign of fluid overload (Festor hazard D).
pub const OVERLOAD_BALANCE_ML: f64 = 10_000.0;
/// MAP at or above this (mmHg) makes more fluid unnecessary when overloaded (Festor hazard D).
pub const OVERLOAD_MAP: f64 = 75.0;
/// MAP above this (mmHg) makes the highest vasopressor level unsafe (Festor hazard B).
pub const HIGH_MAP: f64 = 95.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// G1: lactate > 2 or MAP < 65, and neither fluid nor vasopressor.
    UnderTreatment,
    /// G2: MAP >= 65 and the vasopressor level raised over the previous step.
    VasopressorRaisedAtTarget,
    /// SSC: in the first step, lactate >= 4 or MAP < 65 without IV fluid.
    NoInitialResuscitation,
    /// SSC / Festor D: cumulative balance > 10 L, MAP >= 75, and the highest fluid level.
    FluidDespiteOverload,
    /// Festor B: MAP > 95 on the highest vasopressor level.
    MaxVasopressorAtHighMap,
}

impl Rule {
    pub const ALL: [Rule; 5] =
        [Rule::UnderTreatment, Rule::VasopressorRaisedAtTarget, Rule::NoInitialResuscitation, Rule::FluidDespiteOverload, Rule::MaxVasopressorAtHighMap];

    /// The paper's "unsafe action" checks; the others count toward adherence only.
    pub fn is_safety_check(self) -> bool {
        matches!(self, Rule::UnderTreatment | Rule::VasopressorRaisedAtTarget)
    }

    pub fn explain(self) -> &'static str {
        match self {
            Rule::UnderTreatment => "G1 under-treatment: lactate > 2 mmol/L or MAP < 65 mmHg, but no fluid and no vasopressor",
            Rule::VasopressorRaisedAtTarget => "G2 over-treatment: MAP already >= 65 mmHg, but the vasopressor is raised",
            Rule::NoInitialResuscitation => "Initial resuscitation: lactate >= 4 mmol/L or MAP < 65 mmHg at admission, but no IV fluid",
            Rule::FluidDespiteOverload => "Fluid overload: balance > 10 L and MAP >= 75 mmHg, but the highest fluid level",
            Rule::MaxVasopressorAtHighMap => "High MAP: MAP > 95 mmHg on the highest vasopressor level",
        }
    }
}

/// What the rules need to know about the moment of a decision. Missing
/// values make the rules that need them not applicable (never violated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Situation {
    pub map: Option<f64>,
    pub lactate: Option<f64>,
    pub fluid_balance_ml: Option<f64>,
    /// Vasopressor level of the previous step; `None` at the first step.
    pub previous_vaso: Option<u8>,
    pub first_step: bool,
}

impl Situation {
    /// The situation at a step with these clinical values (schema order).
    pub fn at(values: &[Option<f64>], previous_vaso: Option<u8>, first_step: bool) -> Self {
        use crate::cohort::schema::idx;
        Self { map: values[idx("map")], lactate: values[idx("lactate")], fluid_balance_ml: values[idx("fluid_balance_ml")], previous_vaso, first_step }
    }

    /// The situation at the newest step of a patient's course.
    pub fn of_course(course: &[crate::simulation::CourseStep]) -> Self {
        let newest = course.last().expect("a course has at least one step");
        Self::at(&newest.values, course.len().checked_sub(2).map(|i| course[i].action.vaso), course.len() == 1)
    }
}

/// The rules `action` violates in `situation`.
pub fn violations(situation: &Situation, action: Action) -> Vec<Rule> {
    let s = situation;
    let below_target = s.map.map(|m| m < MAP_TARGET);
    let mut found = Vec::new();
    let hypoperfused_g1 = below_target == Some(true) || s.lactate.is_some_and(|l| l > LACTATE_RAISED);
    if hypoperfused_g1 && action == Action::NONE {
        found.push(Rule::UnderTreatment);
    }
    if below_target == Some(false) && s.previous_vaso.is_some_and(|v| action.vaso > v) {
        found.push(Rule::VasopressorRaisedAtTarget);
    }
    let needs_fluid = below_target == Some(true) || s.lactate.is_some_and(|l| l >= LACTATE_RESUSCITATE);
    if s.first_step && needs_fluid && action.fluid == 0 {
        found.push(Rule::NoInitialResuscitation);
    }
    if s.fluid_balance_ml.is_some_and(|b| b > OVERLOAD_BALANCE_ML) && s.map.is_some_and(|m| m >= OVERLOAD_MAP) && action.fluid == 4 {
        found.push(Rule::FluidDespiteOverload);
    }
    if s.map.is_some_and(|m| m > HIGH_MAP) && action.vaso == 4 {
        found.push(Rule::MaxVasopressorAtHighMap);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(map: f64, lactate: f64) -> Situation {
        Situation { map: Some(map), lactate: Some(lactate), fluid_balance_ml: Some(0.0), previous_vaso: Some(0), first_step: false }
    }

    #[test]
    fn g1_flags_no_treatment_when_hypoperfused_only() {
        assert_eq!(violations(&at(60.0, 1.0), Action::NONE), vec![Rule::UnderTreatment]);
        assert_eq!(violations(&at(80.0, 2.5), Action::NONE), vec![Rule::UnderTreatment]);
        assert!(violations(&at(80.0, 2.0), Action::NONE).is_empty(), "lactate must exceed 2");
        assert!(violations(&at(60.0, 3.0), Action { fluid: 1, vaso: 0 }).is_empty());
    }

    #[test]
    fn g2_flags_raising_the_vasopressor_at_target_only() {
        let mut s = at(70.0, 1.0);
        s.previous_vaso = Some(1);
        assert_eq!(violations(&s, Action { fluid: 0, vaso: 2 }), vec![Rule::VasopressorRaisedAtTarget]);
        assert!(violations(&s, Action { fluid: 0, vaso: 1 }).is_empty(), "keeping the dose is fine");
        s.map = Some(60.0);
        assert!(violations(&s, Action { fluid: 0, vaso: 2 }).is_empty(), "below target raising is fine");
        s.map = Some(70.0);
        s.previous_vaso = None;
        assert!(violations(&s, Action { fluid: 0, vaso: 2 }).is_empty(), "no previous step");
    }

    #[test]
    fn first_step_hypoperfusion_needs_fluid() {
        let mut s = at(80.0, 4.5);
        s.first_step = true;
        s.previous_vaso = None;
        assert_eq!(violations(&s, Action { fluid: 0, vaso: 2 }), vec![Rule::NoInitialResuscitation]);
        assert!(violations(&s, Action { fluid: 2, vaso: 0 }).is_empty());
    }

    #[test]
    fn overload_and_high_map_hazards() {
        let mut s = at(80.0, 1.0);
        s.fluid_balance_ml = Some(12_000.0);
        assert_eq!(violations(&s, Action { fluid: 4, vaso: 0 }), vec![Rule::FluidDespiteOverload]);
        assert!(violations(&s, Action { fluid: 3, vaso: 0 }).is_empty());
        let mut high = at(100.0, 1.0);
        high.previous_vaso = Some(4);
        assert_eq!(violations(&high, Action { fluid: 0, vaso: 4 }), vec![Rule::MaxVasopressorAtHighMap]);
    }

    #[test]
    fn missing_values_make_rules_not_applicable() {
        let s = Situation::default();
        for action in Action::all() {
            assert!(violations(&s, action).is_empty());
        }
    }
}
