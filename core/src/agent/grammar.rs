//! The agent's tool-call grammar (docs/agent.md). Each assistant turn is a
//! short thought followed by exactly one call, which ends the turn:
//!
//! ```text
//! <simulate>vaso=2 fluid=3; vaso=0 fluid=4</simulate>
//! <prescribe>vaso=1 fluid=2</prescribe>
//! ```
//!
//! `simulate` takes 1 to 3 candidate (vasopressor, fluid) levels, each 0-4;
//! `prescribe` exactly one. Parsing never panics: anything else is a
//! [`ParseError`] that says what was expected, which the loop counts and
//! shows the model.

use crate::action::{Action, LEVELS};

pub const MAX_SIMULATED: usize = 3;
/// Generation stops at these: the call is complete.
pub const CALL_ENDS: [&str; 2] = ["</simulate>", "</prescribe>"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolCall {
    Simulate(Vec<Action>),
    Prescribe(Action),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no tool call: end the turn with <simulate>...</simulate> or <prescribe>...</prescribe>")]
    NoCall,
    #[error("the <{0}> call is not closed with </{0}>")]
    Unclosed(&'static str),
    #[error("{0:?} is not a candidate: write vaso=V fluid=F with V and F from 0 to 4")]
    Candidate(String),
    #[error("simulate takes 1 to {MAX_SIMULATED} candidates separated by ';', found {0}")]
    SimulateCount(usize),
    #[error("prescribe takes exactly one candidate, found {0}")]
    PrescribeCount(usize),
}

impl ToolCall {
    /// The call as the grammar writes it.
    pub fn render(&self) -> String {
        let list = |actions: &[Action]| actions.iter().map(|a| render_action(*a)).collect::<Vec<_>>().join("; ");
        match self {
            ToolCall::Simulate(actions) => format!("<simulate>{}</simulate>", list(actions)),
            ToolCall::Prescribe(action) => format!("<prescribe>{}</prescribe>", render_action(*action)),
        }
    }
}

pub fn render_action(action: Action) -> String {
    format!("vaso={} fluid={}", action.vaso, action.fluid)
}

/// The first complete call in an assistant turn.
pub fn parse(turn: &str) -> Result<ToolCall, ParseError> {
    let found = ["simulate", "prescribe"]
        .into_iter()
        .filter_map(|tag| turn.find(&format!("<{tag}>")).map(|at| (at, tag)))
        .min_by_key(|(at, _)| *at);
    let Some((at, tag)) = found else { return Err(ParseError::NoCall) };
    let body_start = at + tag.len() + 2;
    let Some(length) = turn[body_start..].find(&format!("</{tag}>")) else { return Err(ParseError::Unclosed(tag)) };
    let actions = turn[body_start..body_start + length]
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(parse_candidate)
        .collect::<Result<Vec<_>, _>>()?;
    match tag {
        "simulate" if (1..=MAX_SIMULATED).contains(&actions.len()) => Ok(ToolCall::Simulate(actions)),
        "simulate" => Err(ParseError::SimulateCount(actions.len())),
        _ if actions.len() == 1 => Ok(ToolCall::Prescribe(actions[0])),
        _ => Err(ParseError::PrescribeCount(actions.len())),
    }
}

/// `vaso=V fluid=F` (either order, any spacing).
pub fn parse_candidate(text: &str) -> Result<Action, ParseError> {
    let bad = || ParseError::Candidate(text.to_string());
    let (mut vaso, mut fluid) = (None, None);
    for part in text.split_whitespace() {
        let (key, value) = part.split_once('=').ok_or_else(bad)?;
        let level: u8 = value.parse().map_err(|_| bad())?;
        if level >= LEVELS {
            return Err(bad());
        }
        let slot = match key {
            "vaso" => &mut vaso,
            "fluid" => &mut fluid,
            _ => return Err(bad()),
        };
        if slot.replace(level).is_some() {
            return Err(bad());
        }
    }
    match (vaso, fluid) {
        (Some(vaso), Some(fluid)) => Ok(Action { fluid, vaso }),
        _ => Err(bad()),
    }
}

/// The call as [`CallWriter`] writes it, piece by piece (each piece is read
/// as one text at inference, so training examples are tokenized the same way).
pub fn call_pieces(call: &ToolCall) -> Vec<String> {
    let (open, close, actions) = match call {
        ToolCall::Simulate(actions) => ("<simulate>vaso=", "</simulate>", actions.as_slice()),
        ToolCall::Prescribe(action) => ("<prescribe>vaso=", "</prescribe>", std::slice::from_ref(action)),
    };
    let mut pieces = vec![open.to_string()];
    for (i, a) in actions.iter().enumerate() {
        if i > 0 {
            pieces.push("; vaso=".into());
        }
        pieces.push(format!("{} fluid=", a.vaso));
        pieces.push(a.fluid.to_string());
    }
    pieces.push(close.into());
    pieces
}

/// Whether a call may, or must, be a `simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimulateTool {
    Unavailable,
    Optional,
    /// The first call of a decision with a simulator: propose, simulate,
    /// then refine.
    Required,
}

/// Writes a call exactly to the grammar, one choice at a time: at each point
/// it offers the texts that may follow, and the model (constrained decoding)
/// or anyone else picks one. Only the tool, the levels and the number of
/// candidates are ever chosen; everything else is fixed text. A simulate
/// call lists distinct candidates not simulated before in the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallWriter {
    tool: SimulateTool,
    /// Candidates simulated earlier in this decision.
    simulated_before: Vec<Action>,
    /// What a prescribe call may name; `None`: any action.
    prescribable: Option<Vec<Action>>,
    /// What a simulate call may list; `None`: any action.
    simulable: Option<Vec<Action>>,
    /// A simulate call lists at least this many candidates (while new ones
    /// remain).
    min_listed: usize,
    simulate: bool,
    listed: Vec<Action>,
    vaso: u8,
    next: CallPart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallPart {
    Open,
    Vaso,
    Fluid,
    After,
    Complete,
}

impl CallWriter {
    pub fn new(tool: SimulateTool, simulated_before: Vec<Action>) -> Self {
        Self { tool, simulated_before, prescribable: None, simulable: None, min_listed: 1, simulate: false, listed: Vec::new(), vaso: 0, next: CallPart::Open }.prescribing_if_nothing_is_new()
    }

    /// With no candidate left to simulate, the call can only prescribe.
    fn prescribing_if_nothing_is_new(mut self) -> Self {
        if !self.any_new() {
            self.tool = SimulateTool::Unavailable;
        }
        self
    }

    /// A prescribe call may name only these (at least one; faithful
    /// decoding, `runtime::Decoding`).
    pub fn prescribing_only(mut self, actions: Vec<Action>) -> Self {
        assert!(!actions.is_empty(), "something must be prescribable");
        self.prescribable = Some(actions);
        self
    }

    /// A simulate call may list only these (faithful decoding's
    /// `supported_proposals`, `runtime::Decoding`); with none of them new,
    /// the call can only prescribe.
    pub fn simulating_only(mut self, actions: Vec<Action>) -> Self {
        self.simulable = Some(actions);
        self.prescribing_if_nothing_is_new()
    }

    /// A simulate call lists [`MAX_SIMULATED`] candidates, as the teacher's
    /// do, or every new one when fewer remain; the model still picks which
    /// (faithful decoding's `full_proposals`, `runtime::Decoding`).
    pub fn listing_all(mut self) -> Self {
        self.min_listed = MAX_SIMULATED;
        self
    }

    fn may_prescribe(&self, action: Action) -> bool {
        self.prescribable.as_ref().is_none_or(|allowed| allowed.contains(&action))
    }

    /// Whether a simulate call may list `action` next.
    fn is_new(&self, action: Action) -> bool {
        self.simulable.as_ref().is_none_or(|allowed| allowed.contains(&action)) && !self.simulated_before.contains(&action) && !self.listed.contains(&action)
    }

    fn any_new(&self) -> bool {
        Action::all().any(|a| self.is_new(a))
    }

    /// The texts the call may continue with, or `None` once it is complete.
    pub fn options(&self) -> Option<Vec<String>> {
        let simulating = self.simulate;
        let allowed = |a: Action| if simulating { self.is_new(a) } else { self.may_prescribe(a) };
        let vaso_ok = |v: u8| (0..LEVELS).any(|f| allowed(Action { fluid: f, vaso: v }));
        let fluid_ok = |f: u8| allowed(Action { fluid: f, vaso: self.vaso });
        Some(match self.next {
            CallPart::Open => match self.tool {
                SimulateTool::Required => vec!["<simulate>vaso=".into()],
                SimulateTool::Optional => vec!["<simulate>vaso=".into(), "<prescribe>vaso=".into()],
                SimulateTool::Unavailable => vec!["<prescribe>vaso=".into()],
            },
            CallPart::Vaso => (0..LEVELS).filter(|&v| vaso_ok(v)).map(|v| format!("{v} fluid=")).collect(),
            CallPart::Fluid => (0..LEVELS).filter(|&f| fluid_ok(f)).map(|f| f.to_string()).collect(),
            CallPart::After if !simulating => vec!["</prescribe>".into()],
            CallPart::After if self.listed.len() < self.min_listed && self.any_new() => vec!["; vaso=".into()],
            CallPart::After if self.listed.len() < MAX_SIMULATED && self.any_new() => vec!["; vaso=".into(), "</simulate>".into()],
            CallPart::After => vec!["</simulate>".into()],
            CallPart::Complete => return None,
        })
    }

    /// Take option `index` of [`Self::options`].
    pub fn choose(&mut self, index: usize) {
        let chosen = self.options().and_then(|o| o.get(index).cloned()).expect("an offered option");
        let level = || chosen.as_bytes()[0] - b'0';
        self.next = match self.next {
            CallPart::Open => {
                self.simulate = chosen.starts_with("<simulate>");
                CallPart::Vaso
            }
            CallPart::Vaso => {
                self.vaso = level();
                CallPart::Fluid
            }
            CallPart::Fluid => {
                self.listed.push(Action { fluid: level(), vaso: self.vaso });
                CallPart::After
            }
            CallPart::After if chosen.starts_with(';') => CallPart::Vaso,
            CallPart::After | CallPart::Complete => CallPart::Complete,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path through the writer is a call the parser accepts.
    #[test]
    fn the_call_writer_only_writes_valid_calls() {
        let mut state = 12345u64;
        for walk in 0..500 {
            let tool = match walk % 3 {
                0 => SimulateTool::Unavailable,
                1 => SimulateTool::Optional,
                _ => SimulateTool::Required,
            };
            let before: Vec<Action> = Action::all().filter(|a| (a.index() + walk) % 4 != 0).collect();
            let mut writer = CallWriter::new(tool, before.clone());
            let mut text = String::new();
            while let Some(options) = writer.options() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pick = (state >> 33) as usize % options.len();
                text += &options[pick];
                writer.choose(pick);
            }
            let call = parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(call.render(), text);
            assert_eq!(call_pieces(&call).concat(), text);
            match (tool, &call) {
                (SimulateTool::Unavailable, ToolCall::Simulate(_)) => panic!("no simulate without a simulator: {text}"),
                (SimulateTool::Required, ToolCall::Prescribe(_)) => panic!("simulate first: {text}"),
                (_, ToolCall::Simulate(listed)) => {
                    assert!(listed.iter().all(|a| !before.contains(a)), "only new candidates: {text}");
                    assert!(listed.iter().enumerate().all(|(i, a)| !listed[..i].contains(a)), "distinct candidates: {text}");
                }
                _ => {}
            }
        }
        let mut writer = CallWriter::new(SimulateTool::Optional, Vec::new());
        for pick in [0, 2, 1, 0, 0, 4, 0, 3, 3] {
            writer.choose(pick);
        }
        assert_eq!(writer.options(), Some(vec!["</simulate>".to_string()]), "at most three candidates");
        let everything: Vec<Action> = Action::all().collect();
        assert_eq!(CallWriter::new(SimulateTool::Required, everything).options(), Some(vec!["<prescribe>vaso=".to_string()]), "nothing new to simulate");
    }

    #[test]
    fn a_prescription_can_be_held_to_given_actions_and_a_simulation_is_not() {
        let allowed = vec![Action { fluid: 2, vaso: 0 }, Action { fluid: 4, vaso: 1 }];
        let writer = CallWriter::new(SimulateTool::Unavailable, Vec::new()).prescribing_only(allowed.clone());
        // Every complete path names an allowed action.
        let mut stack = vec![(writer, String::new())];
        let mut written = Vec::new();
        while let Some((writer, text)) = stack.pop() {
            let Some(options) = writer.options() else {
                written.push(parse(&text).unwrap());
                continue;
            };
            for (i, option) in options.iter().enumerate() {
                let mut next = writer.clone();
                next.choose(i);
                stack.push((next, text.clone() + option));
            }
        }
        written.sort_by_key(|c| c.render());
        assert_eq!(written, vec![ToolCall::Prescribe(allowed[0]), ToolCall::Prescribe(allowed[1])]);
        // A simulate call still lists any new candidate.
        let mut writer = CallWriter::new(SimulateTool::Required, Vec::new()).prescribing_only(allowed);
        writer.choose(0);
        assert_eq!(writer.options().unwrap().len(), LEVELS as usize);
    }

    /// Held to full proposals, a simulate call lists three candidates, or
    /// every new one when fewer are left; held to supported candidates, it
    /// lists only those; a prescription is unaffected by either.
    #[test]
    fn a_proposal_can_be_held_to_three_candidates_and_to_supported_ones() {
        let walk = |writer: CallWriter, pick: &dyn Fn(usize) -> usize| {
            let (mut writer, mut text) = (writer, String::new());
            while let Some(options) = writer.options() {
                let i = pick(options.len());
                text += &options[i];
                writer.choose(i);
            }
            parse(&text).unwrap()
        };
        // Always taking the last option would close the list after one.
        let last = |n: usize| n - 1;
        assert!(matches!(walk(CallWriter::new(SimulateTool::Required, Vec::new()), &last), ToolCall::Simulate(c) if c.len() == 1));
        assert!(matches!(walk(CallWriter::new(SimulateTool::Required, Vec::new()).listing_all(), &last), ToolCall::Simulate(c) if c.len() == MAX_SIMULATED));
        let all_but_two: Vec<Action> = Action::all().skip(2).collect();
        assert!(matches!(walk(CallWriter::new(SimulateTool::Required, all_but_two).listing_all(), &last), ToolCall::Simulate(c) if c.len() == 2));
        let first = |_: usize| 0;
        let prescribed = walk(CallWriter::new(SimulateTool::Unavailable, Vec::new()).listing_all(), &first);
        assert_eq!(prescribed, ToolCall::Prescribe(Action { fluid: 0, vaso: 0 }));
        // Held to supported candidates: only those, all of them when fewer than three.
        let supported = vec![Action { fluid: 3, vaso: 0 }, Action { fluid: 4, vaso: 1 }];
        let listed = walk(CallWriter::new(SimulateTool::Required, Vec::new()).simulating_only(supported.clone()).listing_all(), &last);
        assert!(matches!(&listed, ToolCall::Simulate(c) if c.len() == 2 && c.iter().all(|a| supported.contains(a))), "{listed:?}");
        // Every supported candidate simulated before: the call can only prescribe.
        let writer = CallWriter::new(SimulateTool::Optional, supported.clone()).simulating_only(supported);
        assert_eq!(writer.options(), Some(vec!["<prescribe>vaso=".to_string()]));
    }

    #[test]
    fn well_formed_calls_parse_and_render_back() {
        let call = parse("MAP is low; compare fluids.\n<simulate>vaso=0 fluid=3; vaso=2 fluid=1</simulate>").unwrap();
        assert_eq!(call, ToolCall::Simulate(vec![Action { fluid: 3, vaso: 0 }, Action { fluid: 1, vaso: 2 }]));
        assert_eq!(parse(&call.render()).unwrap(), call);
        let prescribe = parse("<prescribe> fluid=2   vaso=1 </prescribe> trailing").unwrap();
        assert_eq!(prescribe, ToolCall::Prescribe(Action { fluid: 2, vaso: 1 }));
        assert_eq!(prescribe.render(), "<prescribe>vaso=1 fluid=2</prescribe>");
    }

    #[test]
    fn the_first_call_counts() {
        let call = parse("<prescribe>vaso=0 fluid=1</prescribe><simulate>vaso=1 fluid=1</simulate>").unwrap();
        assert_eq!(call, ToolCall::Prescribe(Action { fluid: 1, vaso: 0 }));
    }

    #[test]
    fn malformed_turns_are_errors_that_say_what_was_expected() {
        let cases = [
            ("I would give fluids.", ParseError::NoCall),
            ("<simulate>vaso=1 fluid=1", ParseError::Unclosed("simulate")),
            ("<simulate>vaso=5 fluid=1</simulate>", ParseError::Candidate("vaso=5 fluid=1".into())),
            ("<simulate>vaso=1</simulate>", ParseError::Candidate("vaso=1".into())),
            ("<simulate>vaso=1 vaso=2 fluid=0</simulate>", ParseError::Candidate("vaso=1 vaso=2 fluid=0".into())),
            ("<simulate>dopamine=1 fluid=0</simulate>", ParseError::Candidate("dopamine=1 fluid=0".into())),
            ("<simulate>vaso=-1 fluid=0</simulate>", ParseError::Candidate("vaso=-1 fluid=0".into())),
            ("<simulate></simulate>", ParseError::SimulateCount(0)),
            ("<simulate>vaso=0 fluid=0; vaso=1 fluid=0; vaso=2 fluid=0; vaso=3 fluid=0</simulate>", ParseError::SimulateCount(4)),
            ("<prescribe>vaso=0 fluid=0; vaso=1 fluid=1</prescribe>", ParseError::PrescribeCount(2)),
        ];
        for (turn, expected) in cases {
            assert_eq!(parse(turn), Err(expected.clone()), "{turn}");
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        for turn in ["<simulate>", "</simulate><simulate>", "<prescribe>vaso=é fluid=1</prescribe>", "<<simulate>>", "\u{0}<prescribe>"] {
            let _ = parse(turn);
        }
    }
}
