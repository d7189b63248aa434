//! One decision of the propose-simulate-refine loop, generic over who
//! proposes (the LLM, or the `wm-mpc` planner writing the same grammar) and
//! what simulates (the learned world model, or none), so every ablation is a
//! configuration, not a copy of the loop.
//!
//! The proposer writes a turn; a `simulate` call is answered with the
//! simulated evidence and guideline flags of each candidate, a malformed turn
//! with what was expected; a `prescribe` call ends the decision. After
//! [`MAX_TURNS`] turns without a valid prescription the loop gives a safe
//! default instead and records why.

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::guideline::{violations, Rule, Situation, LACTATE_RAISED, MAP_TARGET};
use crate::simulation::{CandidateStep, CourseStep};

use super::grammar::{self, render_action, ToolCall};
use super::observation::{flags, render_observation};

/// Turns without a prescription before the loop falls back (the paper's 10).
pub const MAX_TURNS: usize = 10;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AgentError(pub String);

/// The conversation of one decision so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub observation: String,
    /// Each assistant turn and the text the loop answered it with.
    pub turns: Vec<(String, String)>,
}

pub trait Proposer {
    /// The next assistant turn (a thought and one tool call). The LLM reads
    /// the conversation's text; the planner reads the course's numbers.
    fn respond(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<String, AgentError>;
}

pub trait Simulator {
    /// Each candidate's predicted state 4 h ahead.
    fn simulate(&mut self, course: &[CourseStep], candidates: &[Action]) -> Result<Vec<CandidateStep>, AgentError>;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    /// What the proposer wrote.
    Turn { text: String },
    /// A simulate call and its results, in the order asked.
    Simulated { candidates: Vec<CandidateStep>, flags: Vec<Vec<Rule>> },
    /// A turn the grammar rejected, or a call that could not be answered.
    Malformed { error: String },
    Prescribed { action: Action, flags: Vec<Rule> },
    /// No valid prescription: the safe default was given instead.
    Fallback { action: Action, reason: String, flags: Vec<Rule> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub observation: String,
    pub events: Vec<TraceEvent>,
    pub prescription: Action,
    /// Why the safe default was used, if it was.
    pub fallback: Option<String>,
    pub tool_calls: usize,
    pub malformed: usize,
    /// Guideline rules the prescription breaks.
    pub flags: Vec<Rule>,
}

/// Given when the agent does not prescribe validly: never nothing when
/// hypoperfused (fluid first), never a raised vasopressor (the previous level
/// is kept), never the highest fluid level.
pub fn safe_default(situation: &Situation) -> Action {
    let hypoperfused = situation.map.is_some_and(|m| m < MAP_TARGET) || situation.lactate.is_some_and(|l| l > LACTATE_RAISED);
    let vaso = situation.previous_vaso.unwrap_or(0);
    let fluid = match (hypoperfused, vaso) {
        (true, 0) => 2,
        (true, _) => 1,
        (false, _) => 0,
    };
    Action { fluid, vaso }
}

/// The text a simulate call is answered with.
pub fn render_results(situation: &Situation, results: &[CandidateStep]) -> String {
    let mut text = String::from("<result>\n");
    for r in results {
        let band = |key: &str| {
            r.bands.iter().find(|b| b.feature == key).map(|b| {
                if key == "lactate" { format!("{:.1} ({:.1}-{:.1})", b.p50, b.p10, b.p90) } else { format!("{:.0} ({:.0}-{:.0})", b.p50, b.p10, b.p90) }
            })
        };
        text += &format!(
            "{}: in 4 h MAP {}, lactate {}, SOFA {}; survival {:.0}%; spread {:.2}; flags: {}\n",
            render_action(r.action),
            band("map").unwrap_or_default(),
            band("lactate").unwrap_or_default(),
            band("sofa").unwrap_or_default(),
            100.0 * r.survival,
            r.disagreement,
            flags(situation, r.action)
        );
    }
    text + "</result>"
}

/// Run one decision for the newest step of `course`; `on_event` sees each
/// trace event as it happens (the worker streams them).
pub fn decide(
    proposer: &mut dyn Proposer,
    simulator: Option<&mut dyn Simulator>,
    course: &[CourseStep],
    on_event: &mut dyn FnMut(&TraceEvent),
) -> Result<Trace, AgentError> {
    let mut events = Vec::new();
    let result = run(proposer, simulator, course, &mut |event: TraceEvent| {
        on_event(&event);
        events.push(event);
    });
    result.map(|mut trace| {
        trace.events = events;
        trace
    })
}

fn run(
    proposer: &mut dyn Proposer,
    mut simulator: Option<&mut dyn Simulator>,
    course: &[CourseStep],
    emit: &mut dyn FnMut(TraceEvent),
) -> Result<Trace, AgentError> {
    let situation = Situation::of_course(course);
    let mut conversation = Conversation { observation: render_observation(course), turns: Vec::new() };
    let mut trace = Trace {
        observation: conversation.observation.clone(),
        events: Vec::new(),
        prescription: Action::NONE,
        fallback: None,
        tool_calls: 0,
        malformed: 0,
        flags: Vec::new(),
    };
    for _ in 0..MAX_TURNS {
        let text = proposer.respond(course, &conversation)?;
        emit(TraceEvent::Turn { text: text.clone() });
        let answer = match grammar::parse(&text) {
            Ok(ToolCall::Prescribe(action)) => {
                trace.tool_calls += 1;
                trace.prescription = action;
                trace.flags = violations(&situation, action);
                emit(TraceEvent::Prescribed { action, flags: trace.flags.clone() });
                return Ok(trace);
            }
            Ok(ToolCall::Simulate(candidates)) => {
                trace.tool_calls += 1;
                match simulator.as_deref_mut() {
                    Some(simulator) => {
                        let results = simulator.simulate(course, &candidates)?;
                        let rules = results.iter().map(|r| violations(&situation, r.action)).collect();
                        emit(TraceEvent::Simulated { candidates: results.clone(), flags: rules });
                        render_results(&situation, &results)
                    }
                    None => {
                        trace.malformed += 1;
                        let error = "simulation is not available: prescribe".to_string();
                        emit(TraceEvent::Malformed { error: error.clone() });
                        format!("<error>{error}</error>")
                    }
                }
            }
            Err(e) => {
                trace.malformed += 1;
                emit(TraceEvent::Malformed { error: e.to_string() });
                format!("<error>{e}</error>")
            }
        };
        conversation.turns.push((text, answer));
    }
    let action = safe_default(&situation);
    let reason = format!("no valid prescription after {MAX_TURNS} turns");
    trace.prescription = action;
    trace.flags = violations(&situation, action);
    emit(TraceEvent::Fallback { action, reason: reason.clone(), flags: trace.flags.clone() });
    trace.fallback = Some(reason);
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulation::{reference_course, FeatureBand};

    /// Replays fixed turns (the LLM's place in these tests of the loop itself).
    struct Scripted(Vec<&'static str>);

    impl Proposer for Scripted {
        fn respond(&mut self, _: &[CourseStep], conversation: &Conversation) -> Result<String, AgentError> {
            Ok(self.0.get(conversation.turns.len()).unwrap_or(self.0.last().unwrap()).to_string())
        }
    }

    /// Survival rises with fluid; records what it was asked.
    struct ByFluid(Vec<Vec<Action>>);

    impl Simulator for ByFluid {
        fn simulate(&mut self, _: &[CourseStep], candidates: &[Action]) -> Result<Vec<CandidateStep>, AgentError> {
            self.0.push(candidates.to_vec());
            Ok(candidates
                .iter()
                .enumerate()
                .map(|(c, &action)| CandidateStep {
                    candidate: c,
                    action,
                    bands: vec![FeatureBand { feature: "map".into(), p10: 60.0, p50: 64.0 + action.fluid as f64, p90: 70.0 }],
                    survival: 0.7 + 0.05 * action.fluid as f64,
                    disagreement: 0.1,
                })
                .collect())
        }
    }

    #[test]
    fn propose_simulate_then_prescribe() {
        let mut proposer = Scripted(vec!["Low MAP.\n<simulate>vaso=0 fluid=1; vaso=0 fluid=3</simulate>", "Fluid 3 is best.\n<prescribe>vaso=0 fluid=3</prescribe>"]);
        let mut simulator = ByFluid(Vec::new());
        let mut streamed = Vec::new();
        let trace = decide(&mut proposer, Some(&mut simulator), &reference_course(), &mut |e| streamed.push(e.clone())).unwrap();
        assert_eq!(streamed, trace.events, "every event is streamed as it happens");
        assert_eq!(trace.prescription, Action { fluid: 3, vaso: 0 });
        assert_eq!((trace.tool_calls, trace.malformed, trace.fallback.as_deref()), (2, 0, None));
        assert_eq!(simulator.0, vec![vec![Action { fluid: 1, vaso: 0 }, Action { fluid: 3, vaso: 0 }]]);
        assert!(matches!(trace.events[1], TraceEvent::Simulated { .. }));
        assert!(trace.flags.is_empty());
    }

    #[test]
    fn the_simulation_result_is_text_with_evidence_and_flags() {
        let course = reference_course();
        let situation = Situation::of_course(&course);
        let results = ByFluid(Vec::new()).simulate(&course, &[Action::NONE, Action { fluid: 2, vaso: 0 }]).unwrap();
        let text = render_results(&situation, &results);
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("vaso=0 fluid=0: in 4 h MAP 64 (60-70)"), "{text}");
        assert!(text.contains("survival 70%; spread 0.10; flags: G1 under-treatment"), "{text}");
        assert!(text.contains("vaso=0 fluid=2: in 4 h MAP 66 (60-70), lactate , SOFA ; survival 80%; spread 0.10; flags: none"), "{text}");
    }

    #[test]
    fn malformed_turns_are_counted_and_answered_then_the_safe_default_is_given() {
        let mut proposer = Scripted(vec!["I think fluids.", "<simulate>vaso=9 fluid=1</simulate>", "<prescribe>vaso=1"]);
        let trace = decide(&mut proposer, Some(&mut ByFluid(Vec::new())), &reference_course(), &mut |_| {}).unwrap();
        assert_eq!(trace.malformed, MAX_TURNS);
        assert_eq!(trace.fallback.as_deref(), Some("no valid prescription after 10 turns"));
        // MAP 58 after fluid 2 with no vasopressor: fluids again, nothing raised.
        assert_eq!(trace.prescription, Action { fluid: 2, vaso: 0 });
        assert!(trace.flags.is_empty(), "the safe default breaks no rule here: {:?}", trace.flags);
        assert!(matches!(trace.events.last(), Some(TraceEvent::Fallback { .. })));
    }

    #[test]
    fn without_a_simulator_a_simulate_call_is_refused_and_the_agent_must_prescribe() {
        let mut proposer = Scripted(vec!["<simulate>vaso=0 fluid=1</simulate>", "<prescribe>vaso=0 fluid=1</prescribe>"]);
        let trace = decide(&mut proposer, None, &reference_course(), &mut |_| {}).unwrap();
        assert_eq!((trace.prescription, trace.malformed, trace.tool_calls), (Action { fluid: 1, vaso: 0 }, 1, 2));
    }

    #[test]
    fn the_safe_default_never_under_treats_or_raises_the_vasopressor() {
        for map in [50.0, 64.0, 65.0, 90.0] {
            for lactate in [1.0, 2.5, 5.0] {
                for previous_vaso in [None, Some(0), Some(3)] {
                    let situation = Situation { map: Some(map), lactate: Some(lactate), fluid_balance_ml: Some(12_000.0), previous_vaso, first_step: previous_vaso.is_none() };
                    let action = safe_default(&situation);
                    let broken: Vec<Rule> = violations(&situation, action).into_iter().filter(|r| r.is_safety_check()).collect();
                    assert!(broken.is_empty(), "{situation:?} -> {action:?} breaks {broken:?}");
                    assert!(action.fluid < 4);
                }
            }
        }
    }
}
