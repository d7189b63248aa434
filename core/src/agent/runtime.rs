//! The loop's real parts: the learned world model as the simulator, the LLM
//! and the `wm-mpc` planner as proposers.

use crate::action::Action;
use crate::manifest::sha256_hex;
use crate::planner::{tool_scores, MpcConfig};
use crate::simulation::{CandidateStep, CourseStep, SimulateRequest};
use crate::world_model::simulate::simulate_on_cpu;
use crate::world_model::WorldModel;

use super::decision::{AgentError, Shown, Simulator};

/// Answers `simulate` with the world model, 4 h ahead: each candidate's
/// sampled values after 4 h, and its survival and spread exactly as `wm-mpc`
/// scores them.
///
/// Survival is each member's expected survival once the patient has reached
/// the 4-h state (the candidate held while the model reads it; horizon 2),
/// averaged over members; the spread is its SD over members. Read right
/// after the candidate, before any transition, survival cannot tell actions
/// apart (`sepsis eval planner-diagnosis`: correlation 0.002 with the
/// candidates' exact values within states). Both are the planner's exact
/// expectations, not means of the sampled rollouts: the numbers the agent
/// reads are the ones its teacher ranked by (score = survival - spread -
/// 0.05 per flag), so a prescription in the curriculum's examples follows
/// from the evidence shown beside it, without Monte Carlo noise reordering
/// near-ties.
pub struct WorldModelSimulator<'m> {
    pub model: &'m WorldModel,
    /// Draws per candidate and member, for the 4-h values.
    pub samples: usize,
    pub seed: u32,
}

impl WorldModelSimulator<'_> {
    /// What this simulator answers, for caches of decisions made with it:
    /// a change here must not reuse decisions made with the old answers.
    pub const ANSWERS: &'static str = "values after 4 h (sampled); survival and its SD over members as wm-mpc scores them (horizon 2, candidate held)";

    /// What decides this simulator's answers with `model`, whose weights
    /// file holds `weights`, for the keys of recorded decisions and of the
    /// teacher's cached examples: a retrained model, a refitted memory or
    /// new answers must not reuse what the old ones produced. The one
    /// place this key is written, in the form the scoreboard's records
    /// have always used.
    pub fn identity(model: &WorldModel, weights: &[u8]) -> Result<String, serde_json::Error> {
        let mut identity = format!("world model sha256 {}, simulate answers {}", sha256_hex(weights), Self::ANSWERS);
        if let Some(memory) = &model.card.memory {
            let json = serde_json::to_string(memory)?;
            identity.push_str(&format!(", memory sha256 {}", sha256_hex(json.as_bytes())));
        }
        Ok(identity)
    }
}

impl Simulator for WorldModelSimulator<'_> {
    fn simulate(&mut self, course: &[CourseStep], candidates: &[Action]) -> Result<Vec<CandidateStep>, AgentError> {
        let request = SimulateRequest {
            history: course.to_vec(),
            candidates: candidates.iter().map(|&a| vec![a]).collect(),
            horizon: 1,
            samples: self.samples,
            seed: self.seed,
        };
        let simulation = simulate_on_cpu(self.model, request, |_| {}).map_err(|e| AgentError(format!("simulation failed: {e}")))?;
        let [after_4h] = <[_; 1]>::try_from(simulation.steps).map_err(|_| AgentError("a 1-step simulation without 1 step".into()))?;
        // The planner's choice is not made here.
        let scores = tool_scores(self.model, course).map_err(|e| AgentError(format!("scoring failed: {e}")))?;
        Ok(after_4h
            .candidates
            .into_iter()
            .map(|step| {
                let score = &scores[step.action.index()];
                CandidateStep { survival: score.survival, disagreement: score.disagreement, ..step }
            })
            .collect())
    }
}

/// The candidate the teacher would prescribe among those simulated: the
/// highest planner score (`MpcConfig::default`'s penalties for the spread
/// and each flag), the first of equals. On the simulation's figures, not
/// the answer's rounded ones, so equals in whole percent are told apart as
/// the teacher tells them apart.
pub fn best_shown(shown: &[Shown]) -> Option<&Shown> {
    let config = MpcConfig::default();
    let score = |s: &Shown| config.score(s.survival, s.spread, s.flags);
    shown.iter().reduce(|best, s| if score(s) > score(best) + 1e-12 { s } else { best })
}

#[cfg(feature = "llm")]
pub use llm::{system_session, Decoding, LlmProposer};

#[cfg(feature = "llm")]
mod llm {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::agent::decision::{stated_survival, Conversation, Proposer, TurnProgress};
    use crate::agent::grammar::{parse, CallWriter, SimulateTool, ToolCall, CALL_ENDS};
    use crate::agent::observation::situation_words;
    use crate::guideline::Situation;
    use crate::llm::generate::{Generator, Sampling, Session};
    use crate::llm::tokenizer::{answer_turn, system_turn, user_turn};

    /// How the LLM writes a turn.
    #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "mode", rename_all = "snake_case")]
    pub enum Decoding {
        /// Free text, parsed afterwards: the model may break the grammar
        /// (counted as malformed). Ends at a closing tag or `max_tokens`.
        Free { max_tokens: usize },
        /// A thought of at most `thought_tokens` tokens (never '<'; it ends
        /// at a newline), then the call written to the grammar: the model
        /// chooses only the tool, the levels and how many candidates. With a
        /// simulator, the first call is a simulate (propose, simulate, then
        /// refine), each candidate is simulated at most once, and after
        /// `max_simulate_calls` simulate calls only `prescribe` is offered.
        ///
        /// `faithful`: the agent may not contradict what it was shown. Its
        /// first thought begins with the patient's state in the teacher's
        /// words, written from the values (`situation_words`; the model
        /// writes the rest), and a prescription names a simulated candidate
        /// (when any was simulated): one whose shown survival is the one the
        /// thought states ("Best: survival 79%"), when any is. Why: without
        /// it the trained agent wrote "MAP at target" at a MAP of 61, and in
        /// 7 of 40 demo decisions stated the best candidate's survival and
        /// then prescribed another candidate (docs/agent.md).
        Constrained {
            thought_tokens: usize,
            max_simulate_calls: usize,
            // Left out when false, so decisions recorded before the field
            // existed keep their keys (`eval::agent_policy`).
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            faithful: bool,
            /// A simulate call lists three candidates (the model picks
            /// which), as every teacher trace does. Off by default, kept for
            /// experiments: on the scoreboard it filled the list with
            /// treatments clinicians rarely give and prescribed them (out of
            /// support 3.1 % to 19.9 %, docs/agent.md). Left out when false,
            /// as `faithful` is.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            full_proposals: bool,
            /// Where the observation shows the clinicians' practice, a
            /// simulate call lists only candidates in support there (given
            /// in states like this one at least as often as the support
            /// model's threshold: the teacher's and `wm-mpc`'s rule): the
            /// world model has seen those, so its survival figures mean
            /// something. Left out when false, as `faithful` is.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            supported_proposals: bool,
            /// With `faithful`: the refine thought (after a simulate answer)
            /// begins with the survival of the best candidate shown
            /// ("Best: survival 84%,"), best as the teacher ranks them
            /// ([`best_shown`]: survival less the spread and 0.05 per flag,
            /// on the simulation's own figures, not the rounded ones), written
            /// from the answers as the first thought's situation words are
            /// written from the values, and the prescription is that
            /// candidate. The model still chooses what to propose and writes
            /// the rest of the thought. Why: the trained agent read the
            /// answers wrongly where it departed from its teacher (6 of 40
            /// demo decisions, each a candidate with less survival than
            /// another it had just read), and where two candidates showed
            /// the same whole percent it took the higher fluid (3 of 4
            /// departures left once the thought stated the survival;
            /// docs/agent.md). Left out when false, as `faithful` is.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            prescribes_best: bool,
        },
    }

    impl Decoding {
        /// What the app and the scoreboard use.
        pub const DEFAULT: Decoding = Decoding::Constrained { thought_tokens: 16, max_simulate_calls: 1, faithful: true, full_proposals: false, supported_proposals: true, prescribes_best: true };

        /// This decoding with the choices that cannot matter for a decision
        /// turned off: the proposal and reading rules without a simulator,
        /// support without the clinicians' practice, the prescribed best
        /// without faithful decoding. Decision records are keyed by
        /// it, so a rule that changes nothing for a row re-decides nothing.
        pub fn as_used(self, can_simulate: bool, shows_practice: bool) -> Decoding {
            match self {
                Decoding::Constrained { thought_tokens, max_simulate_calls, faithful, full_proposals, supported_proposals, prescribes_best } => Decoding::Constrained {
                    thought_tokens,
                    max_simulate_calls,
                    faithful,
                    full_proposals: full_proposals && can_simulate,
                    supported_proposals: supported_proposals && can_simulate && shows_practice,
                    prescribes_best: prescribes_best && faithful && can_simulate,
                },
                free => free,
            }
        }
    }

    /// The system prompt read once; clone it for every decision.
    pub fn system_session(llm: &std::sync::Arc<crate::llm::generate::Llm>, system_prompt: &str) -> Result<Session, AgentError> {
        let mut system = llm.session();
        system.read(&system_turn(system_prompt)).map_err(|e| AgentError(format!("LLM: {e}")))?;
        Ok(system)
    }

    enum Turn {
        Idle,
        Free(Generator),
        /// `stated`: text written for the model at the start of its thought
        /// (faithful decoding), streamed before the model's own tokens.
        Thought { stated: String, streamed: bool, generator: Generator },
        Call { text: String, writer: CallWriter, chooser: Generator },
    }

    /// The LLM as proposer. Within a decision the session only reads what is
    /// new: the loop's answers to earlier turns.
    pub struct LlmProposer {
        system: Session,
        current: Option<Session>,
        /// Conversation turns already read into `current`.
        read_turns: usize,
        /// What the next constrained call may do.
        tool: SimulateTool,
        simulated_before: Vec<Action>,
        /// Each simulated candidate as its answer showed it.
        shown: Vec<Shown>,
        /// What a simulate call may list (`Decoding`'s `supported_proposals`).
        simulable: Option<Vec<Action>>,
        turn: Turn,
        pub sampling: Sampling,
        pub decoding: Decoding,
        /// Tokens the model chose over all decisions (sampled, not forced).
        pub generated_tokens: usize,
        /// Tokens read as prompt over all decisions (prefill).
        pub prompt_tokens: usize,
    }

    impl LlmProposer {
        /// `system`: a session that has read the system prompt ([`system_session`]).
        pub fn new(system: Session, sampling: Sampling, decoding: Decoding) -> Self {
            Self { system, current: None, read_turns: 0, tool: SimulateTool::Unavailable, simulated_before: Vec::new(), shown: Vec::new(), simulable: None, turn: Turn::Idle, sampling, decoding, generated_tokens: 0, prompt_tokens: 0 }
        }

        fn session(&mut self) -> &mut Session {
            self.current.as_mut().expect("a turn was begun")
        }

        /// What a prescription may name after `thought` (faithful decoding):
        /// with `prescribes_best`, the best shown (the one the thought
        /// states), else the simulated candidates whose shown survival the thought
        /// states, else every simulated candidate; `None` when nothing was
        /// simulated.
        fn faithful_prescriptions(&self, thought: &str) -> Option<Vec<Action>> {
            let simulated: Vec<Action> = self.shown.iter().map(|s| s.action).collect();
            if simulated.is_empty() {
                return None;
            }
            if let (Decoding::Constrained { prescribes_best: true, .. }, Some(best)) = (self.decoding, best_shown(&self.shown)) {
                return Some(vec![best.action]);
            }
            let stated: Vec<Action> = stated_survival(thought).map(|stated| self.shown.iter().filter(|s| s.percent() == stated).map(|s| s.action).collect()).unwrap_or_default();
            Some(if stated.is_empty() { simulated } else { stated })
        }
    }

    fn llm_error(e: candle_core::Error) -> AgentError {
        AgentError(format!("LLM: {e}"))
    }

    impl Proposer for LlmProposer {
        fn begin_turn(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<(), AgentError> {
            if conversation.turns.is_empty() || self.current.is_none() {
                let mut session = self.system.clone();
                self.prompt_tokens += session.read(&user_turn(&conversation.observation)).map_err(llm_error)?;
                self.current = Some(session);
                self.read_turns = 0;
            }
            for (_, answer) in &conversation.turns[self.read_turns..] {
                let text = answer_turn(answer);
                self.prompt_tokens += self.current.as_mut().expect("set above").read(&text).map_err(llm_error)?;
            }
            self.read_turns = conversation.turns.len();
            let simulate_calls: Vec<Vec<Action>> = conversation
                .turns
                .iter()
                .filter_map(|(turn, _)| match parse(turn) {
                    Ok(ToolCall::Simulate(candidates)) => Some(candidates),
                    _ => None,
                })
                .collect();
            let max_calls = match self.decoding {
                Decoding::Constrained { max_simulate_calls, .. } => max_simulate_calls,
                Decoding::Free { .. } => usize::MAX,
            };
            self.tool = if !conversation.can_simulate || simulate_calls.len() >= max_calls {
                SimulateTool::Unavailable
            } else if simulate_calls.is_empty() {
                SimulateTool::Required
            } else {
                SimulateTool::Optional
            };
            self.simulated_before = simulate_calls.concat();
            self.shown = conversation.shown.clone();
            self.simulable = match (self.decoding, conversation.logged) {
                (Decoding::Constrained { supported_proposals: true, .. }, Some(logged)) => Some(logged.supported_actions().collect()),
                _ => None,
            };
            // A new seed per turn, so a sampled turn does not repeat the last.
            let sampling = Sampling { seed: self.sampling.seed.wrapping_add(conversation.turns.len() as u64), ..self.sampling };
            self.turn = match self.decoding {
                Decoding::Free { max_tokens } => Turn::Free(Generator::new(sampling, max_tokens, &CALL_ENDS)),
                Decoding::Constrained { thought_tokens, faithful, prescribes_best, .. } => {
                    let stated = match (faithful, best_shown(&self.shown)) {
                        (true, _) if conversation.turns.is_empty() => format!("{}:", situation_words(&Situation::of_course(course))),
                        // With the comma: the teacher's tokens ("%," is one), so the
                        // model goes on as it learnt to.
                        (true, Some(best)) if prescribes_best => format!("Best: survival {}%,", best.percent()),
                        _ => String::new(),
                    };
                    self.prompt_tokens += self.session().read(&stated).map_err(llm_error)?;
                    let generator = self.session().tag_free(Generator::new(sampling, thought_tokens, &["\n"])).map_err(llm_error)?;
                    Turn::Thought { stated, streamed: false, generator }
                }
            };
            Ok(())
        }

        fn advance(&mut self) -> Result<TurnProgress, AgentError> {
            match std::mem::replace(&mut self.turn, Turn::Idle) {
                Turn::Idle => Err(AgentError("advance() before begin_turn()".into())),
                Turn::Free(mut generator) => match self.session().next_token(&mut generator).map_err(llm_error)? {
                    Some(piece) => {
                        self.generated_tokens += 1;
                        self.turn = Turn::Free(generator);
                        Ok(TurnProgress::Piece(piece))
                    }
                    None => Ok(TurnProgress::Done(generator.into_generation(false).text)),
                },
                Turn::Thought { stated, streamed: false, generator } if !stated.is_empty() => {
                    let piece = stated.clone();
                    self.turn = Turn::Thought { stated, streamed: true, generator };
                    Ok(TurnProgress::Piece(piece))
                }
                Turn::Thought { stated, mut generator, .. } => match self.session().next_token(&mut generator).map_err(llm_error)? {
                    Some(piece) => {
                        self.generated_tokens += 1;
                        self.turn = Turn::Thought { stated, streamed: true, generator };
                        Ok(TurnProgress::Piece(piece))
                    }
                    None => {
                        let mut text = stated + generator.text();
                        let mut piece = String::new();
                        if !text.trim().is_empty() && !text.ends_with('\n') {
                            self.prompt_tokens += self.session().read("\n").map_err(llm_error)?;
                            piece.push('\n');
                            text.push('\n');
                        }
                        let mut writer = CallWriter::new(self.tool, self.simulated_before.clone());
                        if let Some(supported) = self.simulable.clone() {
                            writer = writer.simulating_only(supported);
                        }
                        if let Decoding::Constrained { full_proposals: true, .. } = self.decoding {
                            writer = writer.listing_all();
                        }
                        if let Decoding::Constrained { faithful: true, .. } = self.decoding {
                            if let Some(allowed) = self.faithful_prescriptions(&text) {
                                writer = writer.prescribing_only(allowed);
                            }
                        }
                        let chooser = Generator::new(self.sampling, 0, &[]);
                        self.turn = Turn::Call { text, writer, chooser };
                        Ok(TurnProgress::Piece(piece))
                    }
                },
                Turn::Call { mut text, mut writer, mut chooser } => {
                    let Some(options) = writer.options() else { return Ok(TurnProgress::Done(text)) };
                    let choice = self.session().choose(&options, &mut chooser).map_err(llm_error)?;
                    self.generated_tokens += choice.sampled;
                    writer.choose(choice.index);
                    text += &choice.text;
                    self.turn = Turn::Call { text, writer, chooser };
                    Ok(TurnProgress::Piece(choice.text))
                }
            }
        }
    }
}

#[cfg(feature = "eval")]
pub use planner::PlannerProposer;

#[cfg(feature = "eval")]
mod planner {
    use super::*;
    use crate::agent::decision::{survival_percent, Conversation, Proposer, TurnProgress};
    use crate::agent::grammar::{ToolCall, MAX_SIMULATED};
    use crate::agent::observation::{flags, situation_words};
    use crate::baselines::ai_clinician::AiClinician;
    use crate::guideline::Situation;
    use crate::planner::{best, history_of, score_all, situation_of, CandidateScore};

    /// `wm-mpc` writing the agent's grammar: it simulates its three best
    /// supported candidates (in the grid's order), then prescribes its best
    /// one, each after a rationale short enough for the agent's constrained
    /// thought (at most 16 tokens). The teacher of the curriculum's
    /// behaviour cloning. Its best is the simulated candidate with the
    /// highest survival - spread - 0.05 per flag in the results it was
    /// answered with ([`WorldModelSimulator`] answers the planner's numbers).
    pub struct PlannerProposer<'m> {
        pub model: &'m WorldModel,
        pub support: &'m AiClinician,
        pub config: MpcConfig,
        turn: Option<String>,
    }

    impl<'m> PlannerProposer<'m> {
        pub fn new(model: &'m WorldModel, support: &'m AiClinician, config: MpcConfig) -> Self {
            Self { model, support, config, turn: None }
        }
    }

    impl PlannerProposer<'_> {
        fn scores(&self, course: &[CourseStep]) -> Result<Vec<CandidateScore>, AgentError> {
            let history = history_of(course);
            let situation = situation_of(&history);
            let logged = self.support.logged_counts(&course.last().expect("non-empty").values);
            let mut all = score_all(self.model, &[history], &[situation], &[logged], &self.config.with_support(self.support)).map_err(|e| AgentError(e.to_string()))?;
            Ok(all.remove(0))
        }
    }

    impl Proposer for PlannerProposer<'_> {
        fn begin_turn(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<(), AgentError> {
            self.turn = Some(self.respond(course, conversation)?);
            Ok(())
        }

        fn advance(&mut self) -> Result<TurnProgress, AgentError> {
            self.turn.take().map(TurnProgress::Done).ok_or_else(|| AgentError("advance() before begin_turn()".into()))
        }
    }

    impl PlannerProposer<'_> {
        fn respond(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<String, AgentError> {
            let scores = self.scores(course)?;
            if conversation.turns.is_empty() {
                let mut ranked: Vec<&CandidateScore> = scores.iter().filter(|c| c.supported).collect();
                ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
                let mut shortlist: Vec<Action> = ranked.iter().take(MAX_SIMULATED).map(|c| c.action).collect();
                if shortlist.is_empty() {
                    shortlist.push(best(&scores).action);
                }
                // Asked in the grid's order, not the planner's: were the best
                // always asked first, an imitator could prescribe the first
                // candidate it asked for and never read the results.
                shortlist.sort_by_key(|a| a.index());
                let words = situation_words(&Situation::of_course(course));
                return Ok(format!("{words}: compare.\n{}", ToolCall::Simulate(shortlist).render()));
            }
            let chosen = best(&scores);
            let situation = Situation::of_course(course);
            Ok(format!(
                "Best: survival {}%, flags {}.\n{}",
                survival_percent(chosen.survival),
                flags(&situation, chosen.action),
                ToolCall::Prescribe(chosen.action).render()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::N_ACTIONS;
    use crate::agent::decision::Simulator;
    use crate::planner::{history_of, score_all, situation_of};
    use crate::simulation::reference_course;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../public/models/world-model");

    /// The teacher's ranking of what was simulated: three points of
    /// survival do not pay for a flag, nor for a spread 0.04 wider; half a
    /// point tells apart what shows as the same whole percent; exact equals
    /// keep the first.
    #[test]
    fn the_best_shown_is_the_teachers_ranking_of_the_simulated_figures() {
        let shown = |fluid, survival, spread, flags| Shown { action: Action { fluid, vaso: 0 }, survival, spread, flags };
        assert_eq!(best_shown(&[shown(1, 0.80, 0.01, 0), shown(4, 0.83, 0.01, 1)]).unwrap().action.fluid, 1);
        assert_eq!(best_shown(&[shown(1, 0.80, 0.01, 0), shown(4, 0.83, 0.05, 0)]).unwrap().action.fluid, 1);
        assert_eq!(best_shown(&[shown(1, 0.80, 0.01, 0), shown(4, 0.83, 0.02, 0)]).unwrap().action.fluid, 4);
        let (fluid4, fluid3) = (shown(4, 0.8221, 0.01, 0), shown(3, 0.8249, 0.01, 0));
        assert_eq!((fluid4.percent(), fluid3.percent()), (82, 82));
        assert_eq!(best_shown(&[fluid4, fluid3]).unwrap().action.fluid, 3, "both show 82 %");
        assert_eq!(best_shown(&[shown(2, 0.80, 0.01, 0), shown(3, 0.80, 0.01, 0)]).unwrap().action.fluid, 2);
        assert_eq!(best_shown(&[]), None);
    }

    fn shipped() -> WorldModel {
        WorldModel::load(std::path::Path::new(SHIPPED)).expect("the shipped world model")
    }

    #[test]
    fn identity_names_the_weights_the_answers_and_the_memory_in_the_records_form() {
        let model = shipped();
        let weights = std::fs::read(format!("{SHIPPED}.safetensors")).unwrap();
        let memory = serde_json::to_string(model.card.memory.as_ref().expect("the shipped card has a memory")).unwrap();
        // The scoreboard's decision records are keyed by exactly this text:
        // another form would re-decide every simulating row.
        let expected = format!(
            "world model sha256 {}, simulate answers {}, memory sha256 {}",
            sha256_hex(&weights),
            WorldModelSimulator::ANSWERS,
            sha256_hex(memory.as_bytes())
        );
        assert_eq!(WorldModelSimulator::identity(&model, &weights).unwrap(), expected);
        // Other weights or no memory give another key.
        let mut other = weights.clone();
        other[0] ^= 1;
        assert_ne!(WorldModelSimulator::identity(&model, &other).unwrap(), expected);
        let mut without_memory = model;
        without_memory.card.memory = None;
        assert!(!WorldModelSimulator::identity(&without_memory, &weights).unwrap().contains("memory"));
    }

    fn planner_scores(model: &WorldModel, course: &[CourseStep]) -> Vec<crate::planner::CandidateScore> {
        let history = history_of(course);
        score_all(model, std::slice::from_ref(&history), &[situation_of(&history)], &[[0; N_ACTIONS]], &MpcConfig::default()).unwrap().remove(0)
    }

    #[test]
    fn the_simulate_tool_answers_sampled_4h_values_and_the_planners_survival_and_spread() {
        let model = shipped();
        let course = reference_course();
        let candidates = [Action { fluid: 4, vaso: 0 }, Action::NONE, Action { fluid: 2, vaso: 1 }];
        let answers = WorldModelSimulator { model: &model, samples: 16, seed: 5 }.simulate(&course, &candidates).unwrap();
        let scores = planner_scores(&model, &course);
        let sampled = simulate_on_cpu(
            &model,
            SimulateRequest { history: course.clone(), candidates: candidates.iter().map(|&a| vec![a]).collect(), horizon: 1, samples: 16, seed: 5 },
            |_| {},
        )
        .unwrap();
        assert_eq!(answers.len(), 3);
        for ((answer, &action), sampled) in answers.iter().zip(&candidates).zip(&sampled.steps[0].candidates) {
            assert_eq!(answer.action, action, "answered in the order asked");
            assert_eq!(answer.survival, scores[action.index()].survival);
            assert_eq!(answer.disagreement, scores[action.index()].disagreement);
            assert_eq!(answer.bands, sampled.bands, "the 4-h values are the sampled simulation's");
        }
        // The candidates are told apart (what the tool is for).
        assert!(answers.windows(2).any(|w| (w[0].survival - w[1].survival).abs() > 1e-4), "{answers:?}");
    }

    #[cfg(feature = "eval")]
    #[test]
    fn the_teacher_asks_in_the_grids_order_and_prescribes_the_best_of_what_it_read() {
        use crate::agent::decision::{Decision, TraceEvent};
        use crate::guideline::{violations, Situation};
        let model = shipped();
        let support_path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../public/models/ai-clinician.json"));
        let support = crate::eval::policies::load_ai_clinician(support_path).unwrap();
        let mut asked_out_of_planner_order = false;
        // The reference course and two variations, so the shortlist is not one case.
        for map in [58.0, 66.0, 80.0] {
            let mut course = reference_course();
            course.last_mut().unwrap().values[crate::cohort::schema::idx("map")] = Some(map);
            let mut proposer = PlannerProposer::new(&model, &support, MpcConfig::default());
            let mut simulator = WorldModelSimulator { model: &model, samples: 16, seed: 1 };
            let trace = Decision::new(&mut proposer, Some(&mut simulator), &course, None).run(&mut |_| {}).unwrap();
            let read: Vec<CandidateStep> =
                trace.events.iter().find_map(|e| if let TraceEvent::Simulated { candidates, .. } = e { Some(candidates.clone()) } else { None }).expect("it simulated");
            let asked: Vec<usize> = read.iter().map(|c| c.action.index()).collect();
            assert!(asked.windows(2).all(|w| w[0] < w[1]), "asked in the grid's order: {asked:?}");
            let shown_score = |c: &CandidateStep| c.survival - c.disagreement - 0.05 * violations(&Situation::of_course(&course), c.action).len() as f64;
            let best_read = read.iter().max_by(|a, b| shown_score(a).total_cmp(&shown_score(b))).unwrap();
            assert_eq!(trace.prescription, best_read.action, "the prescription follows from the results it read");
            asked_out_of_planner_order |= read[0].action != trace.prescription;
        }
        assert!(asked_out_of_planner_order, "in some case the best is not the first asked");
    }
}
