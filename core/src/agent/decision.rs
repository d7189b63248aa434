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
//!
//! A [`Decision`] advances one small step at a time (one token, one tool
//! call), so the browser worker can yield between steps and stop within one
//! token when the user cancels; [`decide`] runs one to the end.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::guideline::{violations, Rule, Situation, LACTATE_RAISED, MAP_TARGET};
use crate::simulation::{CandidateStep, CourseStep};

use super::grammar::{self, render_action, ToolCall};
use super::observation::{flags, render_observation, LoggedPractice};

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
    /// Whether the `simulate` tool is offered.
    pub can_simulate: bool,
    /// The clinicians' practice in states like this one, where the
    /// observation shows it.
    pub logged: Option<LoggedPractice>,
    /// Each candidate simulated so far with the simulation's own figures
    /// (its answer shows them rounded), so the loop ranks what was shown
    /// without reading its own text back. Not serialized: the text is the
    /// conversation's record.
    #[serde(skip)]
    pub shown: Vec<Shown>,
}

/// What one step of writing a turn produced.
#[derive(Clone, Debug, PartialEq)]
pub enum TurnProgress {
    /// More text of the turn (streamed as it is written).
    Piece(String),
    /// The whole turn.
    Done(String),
}

pub trait Proposer {
    /// Start the next assistant turn (a thought and one tool call). The LLM
    /// reads the conversation's text; the planner reads the course's numbers.
    fn begin_turn(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<(), AgentError>;
    /// Write a little more of the turn begun last.
    fn advance(&mut self) -> Result<TurnProgress, AgentError>;
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
            "{}: MAP {}, lactate {}, SOFA {}, survival {}%, spread {:.2}, flags: {}\n",
            render_action(r.action),
            band("map").unwrap_or_default(),
            band("lactate").unwrap_or_default(),
            band("sofa").unwrap_or_default(),
            survival_percent(r.survival),
            r.disagreement,
            flags(situation, r.action)
        );
    }
    text + "</result>"
}

/// One simulated candidate as the agent was shown it (the answer rounds the
/// figures): faithful decoding holds a prescription to what its thought
/// states, and the prescribed best ranks these.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shown {
    pub action: Action,
    pub survival: f64,
    pub spread: f64,
    /// Guideline flags shown.
    pub flags: usize,
}

impl Shown {
    /// A simulated candidate and the guideline rules it breaks.
    pub fn of(result: &CandidateStep, flags: &[Rule]) -> Shown {
        Shown { action: result.action, survival: result.survival, spread: result.disagreement, flags: flags.len() }
    }

    /// The survival as the answer shows it, in whole percent.
    pub fn percent(&self) -> u32 {
        survival_percent(self.survival)
    }
}

/// A survival as answers and thoughts write it, in whole percent.
pub fn survival_percent(survival: f64) -> u32 {
    (100.0 * survival).round() as u32
}

/// The survival a thought states ("Best: survival 79%, ..."), if any.
pub fn stated_survival(thought: &str) -> Option<u32> {
    thought.split_once("survival ")?.1.split_once('%')?.0.trim().parse().ok()
}

/// What one step of a [`Decision`] produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Text the proposer is writing.
    Text(String),
    Event(TraceEvent),
    Done(Trace),
}

/// One decision for the newest step of a course, advanced step by step.
pub struct Decision<'a> {
    proposer: &'a mut dyn Proposer,
    simulator: Option<&'a mut dyn Simulator>,
    course: &'a [CourseStep],
    situation: Situation,
    conversation: Conversation,
    trace: Trace,
    in_turn: bool,
    pending: VecDeque<Progress>,
    finished: bool,
}

impl<'a> Decision<'a> {
    /// `logged`: the clinicians' practice in states like this one, where
    /// the proposer's observation format shows it (None where it does not).
    pub fn new(proposer: &'a mut dyn Proposer, simulator: Option<&'a mut dyn Simulator>, course: &'a [CourseStep], logged: Option<&LoggedPractice>) -> Self {
        let can_simulate = simulator.is_some();
        let observation = render_observation(course, can_simulate, logged);
        Decision {
            proposer,
            simulator,
            course,
            situation: Situation::of_course(course),
            conversation: Conversation { observation: observation.clone(), turns: Vec::new(), can_simulate, logged: logged.copied(), shown: Vec::new() },
            trace: Trace { observation, events: Vec::new(), prescription: Action::NONE, fallback: None, tool_calls: 0, malformed: 0, flags: Vec::new() },
            in_turn: false,
            pending: VecDeque::new(),
            finished: false,
        }
    }

    /// Turns finished so far.
    pub fn turns(&self) -> usize {
        self.conversation.turns.len()
    }

    /// What was said so far: the observation, each answered turn and its
    /// answer (the final, prescribing turn is in the trace's events).
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Advance to the end; `on_event` sees each event as it happens. The
    /// conversation stays readable afterwards.
    pub fn run(&mut self, on_event: &mut dyn FnMut(&TraceEvent)) -> Result<Trace, AgentError> {
        loop {
            match self.advance()? {
                Progress::Text(_) => {}
                Progress::Event(event) => on_event(&event),
                Progress::Done(trace) => return Ok(trace),
            }
        }
    }

    /// The next piece of progress; after `Done` the decision is over (and
    /// `Done` repeats).
    pub fn advance(&mut self) -> Result<Progress, AgentError> {
        if let Some(progress) = self.pending.pop_front() {
            return Ok(progress);
        }
        if self.finished {
            return Ok(Progress::Done(self.trace.clone()));
        }
        if !self.in_turn {
            if self.turns() == MAX_TURNS {
                let action = safe_default(&self.situation);
                let reason = format!("no valid prescription after {MAX_TURNS} turns");
                self.trace.prescription = action;
                self.trace.flags = violations(&self.situation, action);
                self.trace.fallback = Some(reason.clone());
                self.emit(TraceEvent::Fallback { action, reason, flags: self.trace.flags.clone() });
                self.finish();
                return self.advance();
            }
            self.proposer.begin_turn(self.course, &self.conversation)?;
            self.in_turn = true;
        }
        match self.proposer.advance()? {
            TurnProgress::Piece(text) => Ok(Progress::Text(text)),
            TurnProgress::Done(text) => {
                self.in_turn = false;
                self.end_turn(text)?;
                self.advance()
            }
        }
    }

    fn emit(&mut self, event: TraceEvent) {
        self.trace.events.push(event.clone());
        self.pending.push_back(Progress::Event(event));
    }

    /// The decision is over: `Done` follows the events already queued.
    fn finish(&mut self) {
        self.finished = true;
        self.pending.push_back(Progress::Done(self.trace.clone()));
    }

    /// Act on a finished turn: answer it, or end the decision.
    fn end_turn(&mut self, text: String) -> Result<(), AgentError> {
        self.emit(TraceEvent::Turn { text: text.clone() });
        let answer = match grammar::parse(&text) {
            Ok(ToolCall::Prescribe(action)) => {
                self.trace.tool_calls += 1;
                self.trace.prescription = action;
                self.trace.flags = violations(&self.situation, action);
                self.emit(TraceEvent::Prescribed { action, flags: self.trace.flags.clone() });
                self.finish();
                return Ok(());
            }
            Ok(ToolCall::Simulate(candidates)) => {
                self.trace.tool_calls += 1;
                match self.simulator.as_deref_mut() {
                    Some(simulator) => {
                        let results = simulator.simulate(self.course, &candidates)?;
                        let rules: Vec<Vec<Rule>> = results.iter().map(|r| violations(&self.situation, r.action)).collect();
                        let text = render_results(&self.situation, &results);
                        self.conversation.shown.extend(results.iter().zip(&rules).map(|(r, f)| Shown::of(r, f)));
                        self.emit(TraceEvent::Simulated { candidates: results, flags: rules });
                        text
                    }
                    None => {
                        self.trace.malformed += 1;
                        let error = "simulation is not available: prescribe".to_string();
                        self.emit(TraceEvent::Malformed { error: error.clone() });
                        format!("<error>{error}</error>")
                    }
                }
            }
            Err(e) => {
                self.trace.malformed += 1;
                self.emit(TraceEvent::Malformed { error: e.to_string() });
                format!("<error>{e}</error>")
            }
        };
        self.conversation.turns.push((text, answer));
        Ok(())
    }
}

/// Run one decision for the newest step of `course` to the end ([`Decision::new`]
/// says what `logged` is); `on_event` sees each trace event as it happens.
pub fn decide<'a>(
    proposer: &'a mut dyn Proposer,
    simulator: Option<&'a mut dyn Simulator>,
    course: &'a [CourseStep],
    logged: Option<&LoggedPractice>,
    on_event: &mut dyn FnMut(&TraceEvent),
) -> Result<Trace, AgentError> {
    Decision::new(proposer, simulator, course, logged).run(on_event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulation::{reference_course, FeatureBand};

    // The LLM's place in these tests of the loop itself.
    /// Replays fixed turns, each streamed in two pieces.
    struct Scripted {
        turns: Vec<&'static str>,
        current: &'static str,
        written: usize,
    }

    impl Scripted {
        fn new(turns: Vec<&'static str>) -> Self {
            Scripted { turns, current: "", written: 0 }
        }
    }

    impl Proposer for Scripted {
        fn begin_turn(&mut self, _: &[CourseStep], conversation: &Conversation) -> Result<(), AgentError> {
            self.current = self.turns.get(conversation.turns.len()).unwrap_or(self.turns.last().unwrap());
            self.written = 0;
            Ok(())
        }

        fn advance(&mut self) -> Result<TurnProgress, AgentError> {
            if self.written == 0 {
                self.written = self.current.len() / 2;
                return Ok(TurnProgress::Piece(self.current[..self.written].to_string()));
            }
            Ok(TurnProgress::Done(self.current.to_string()))
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
                    logged_transitions: None,
                })
                .collect())
        }
    }

    #[test]
    fn propose_simulate_then_prescribe() {
        let mut proposer = Scripted::new(vec!["Low MAP.\n<simulate>vaso=0 fluid=1; vaso=0 fluid=3</simulate>", "Fluid 3 is best.\n<prescribe>vaso=0 fluid=3</prescribe>"]);
        let mut simulator = ByFluid(Vec::new());
        let mut streamed = Vec::new();
        let trace = decide(&mut proposer, Some(&mut simulator), &reference_course(), None, &mut |e| streamed.push(e.clone())).unwrap();
        assert_eq!(streamed, trace.events, "every event is streamed as it happens");
        assert_eq!(trace.prescription, Action { fluid: 3, vaso: 0 });
        assert_eq!((trace.tool_calls, trace.malformed, trace.fallback.as_deref()), (2, 0, None));
        assert_eq!(simulator.0, vec![vec![Action { fluid: 1, vaso: 0 }, Action { fluid: 3, vaso: 0 }]]);
        assert!(matches!(trace.events[1], TraceEvent::Simulated { .. }));
        assert!(trace.flags.is_empty());
    }

    #[test]
    fn a_decision_advances_a_piece_at_a_time_and_stays_done() {
        let turn = "Fluid.\n<prescribe>vaso=0 fluid=2</prescribe>";
        let mut proposer = Scripted::new(vec![turn]);
        let course = reference_course();
        let mut decision = Decision::new(&mut proposer, None, &course, None);
        assert!(matches!(decision.advance().unwrap(), Progress::Text(t) if turn.starts_with(&t) && t.len() < turn.len()));
        assert_eq!(decision.advance().unwrap(), Progress::Event(TraceEvent::Turn { text: turn.into() }));
        assert!(matches!(decision.advance().unwrap(), Progress::Event(TraceEvent::Prescribed { .. })));
        let Progress::Done(trace) = decision.advance().unwrap() else { panic!("the decision ends after the prescription") };
        assert_eq!(trace.prescription, Action { fluid: 2, vaso: 0 });
        assert_eq!(decision.advance().unwrap(), Progress::Done(trace));
    }

    #[test]
    fn the_simulation_result_is_text_with_evidence_and_flags() {
        let course = reference_course();
        let situation = Situation::of_course(&course);
        let results = ByFluid(Vec::new()).simulate(&course, &[Action::NONE, Action { fluid: 2, vaso: 0 }]).unwrap();
        let text = render_results(&situation, &results);
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("vaso=0 fluid=0: MAP 64 (60-70)"), "{text}");
        assert!(text.contains("survival 70%, spread 0.10, flags: G1"), "{text}");
        assert!(text.contains("vaso=0 fluid=2: MAP 66 (60-70), lactate , SOFA , survival 80%, spread 0.10, flags: none"), "{text}");
    }

    #[test]
    fn malformed_turns_are_counted_and_answered_then_the_safe_default_is_given() {
        let mut proposer = Scripted::new(vec!["I think fluids.", "<simulate>vaso=9 fluid=1</simulate>", "<prescribe>vaso=1"]);
        let trace = decide(&mut proposer, Some(&mut ByFluid(Vec::new())), &reference_course(), None, &mut |_| {}).unwrap();
        assert_eq!(trace.malformed, MAX_TURNS);
        assert_eq!(trace.fallback.as_deref(), Some("no valid prescription after 10 turns"));
        // MAP 58 after fluid 2 with no vasopressor: fluids again, nothing raised.
        assert_eq!(trace.prescription, Action { fluid: 2, vaso: 0 });
        assert!(trace.flags.is_empty(), "the safe default breaks no rule here: {:?}", trace.flags);
        assert!(matches!(trace.events.last(), Some(TraceEvent::Fallback { .. })));
    }

    #[test]
    fn without_a_simulator_a_simulate_call_is_refused_and_the_agent_must_prescribe() {
        let mut proposer = Scripted::new(vec!["<simulate>vaso=0 fluid=1</simulate>", "<prescribe>vaso=0 fluid=1</prescribe>"]);
        let trace = decide(&mut proposer, None, &reference_course(), None, &mut |_| {}).unwrap();
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

    /// Hands each turn's view of what was simulated to the test.
    struct Watching {
        inner: Scripted,
        shown: Vec<Vec<Shown>>,
    }

    impl Proposer for Watching {
        fn begin_turn(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<(), AgentError> {
            self.shown.push(conversation.shown.clone());
            self.inner.begin_turn(course, conversation)
        }

        fn advance(&mut self) -> Result<TurnProgress, AgentError> {
            self.inner.advance()
        }
    }

    #[test]
    fn the_loop_keeps_each_simulated_candidates_figures_and_a_thought_states_one() {
        let (low, high) = (Action { fluid: 1, vaso: 0 }, Action { fluid: 4, vaso: 2 });
        let mut proposer = Watching { inner: Scripted::new(vec!["Compare.\n<simulate>vaso=0 fluid=1; vaso=2 fluid=4</simulate>", "Best.\n<prescribe>vaso=2 fluid=4</prescribe>"]), shown: Vec::new() };
        let mut simulator = ByFluid(Vec::new());
        let course = reference_course();
        decide(&mut proposer, Some(&mut simulator), &course, None, &mut |_| {}).unwrap();
        let flags = |a: Action| violations(&Situation::of_course(&course), a).len();
        let expected = vec![Shown { action: low, survival: 0.75, spread: 0.1, flags: flags(low) }, Shown { action: high, survival: 0.9, spread: 0.1, flags: flags(high) }];
        assert_eq!(proposer.shown.len(), 2);
        assert!(proposer.shown[0].is_empty(), "nothing simulated before the first turn");
        assert_eq!(proposer.shown[1].iter().map(|s| (s.action, s.percent(), s.flags)).collect::<Vec<_>>(), expected.iter().map(|s| (s.action, s.percent(), s.flags)).collect::<Vec<_>>());
        assert!(proposer.shown[1].iter().zip(&expected).all(|(a, b)| (a.survival - b.survival).abs() < 1e-12 && (a.spread - b.spread).abs() < 1e-12));
        assert_eq!((survival_percent(0.8249), survival_percent(0.8251)), (82, 83));
        assert_eq!(stated_survival("Best: survival 79%, flags none.\n"), Some(79));
        assert_eq!(stated_survival("Best: survival high."), None);
        assert_eq!(stated_survival("MAP low, lactate high: compare."), None);
    }
}
