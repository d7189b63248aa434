//! The loop's real parts: the learned world model as the simulator, the LLM
//! and the `wm-mpc` planner as proposers.

use crate::action::Action;
use crate::simulation::{CandidateStep, CourseStep, SimulateRequest};
use crate::world_model::simulate::simulate_on_cpu;
use crate::world_model::WorldModel;

use super::decision::{AgentError, Simulator};

/// Answers `simulate` with the world model, 4 h ahead.
pub struct WorldModelSimulator<'m> {
    pub model: &'m WorldModel,
    /// Draws per candidate and member.
    pub samples: usize,
    pub seed: u32,
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
        Ok(simulation.steps.into_iter().next().map(|s| s.candidates).unwrap_or_default())
    }
}

#[cfg(feature = "llm")]
pub use llm::LlmProposer;

#[cfg(feature = "llm")]
mod llm {
    use super::*;
    use crate::agent::decision::{Conversation, Proposer};
    use crate::agent::grammar::CALL_ENDS;
    use crate::llm::generate::{Flow, Llm, Sampling, Session};

    /// Called with each generated piece of text; `Flow::Stop` cancels.
    pub type TokenCallback<'l> = Box<dyn FnMut(&str) -> Flow + 'l>;

    /// The LLM as proposer. The system prompt's KV cache is computed once
    /// and cloned for every decision; within a decision the session only
    /// reads what is new.
    pub struct LlmProposer<'l> {
        system: Session<'l>,
        current: Option<Session<'l>>,
        /// Conversation turns already read into `current`.
        read_turns: usize,
        pub sampling: Sampling,
        pub max_tokens: usize,
        /// Tokens generated over all decisions (for tokens-per-second figures).
        pub generated_tokens: usize,
        pub on_token: Option<TokenCallback<'l>>,
    }

    impl<'l> LlmProposer<'l> {
        pub fn new(llm: &'l Llm, system_prompt: &str, sampling: Sampling, max_tokens: usize) -> Result<Self, AgentError> {
            let mut system = llm.session();
            system.read(&format!("<|im_start|>system\n{system_prompt}<|im_end|>\n")).map_err(|e| AgentError(e.to_string()))?;
            Ok(Self { system, current: None, read_turns: 0, sampling, max_tokens, generated_tokens: 0, on_token: None })
        }
    }

    impl Proposer for LlmProposer<'_> {
        fn respond(&mut self, _: &[CourseStep], conversation: &Conversation) -> Result<String, AgentError> {
            let fail = |e: candle_core::Error| AgentError(format!("LLM: {e}"));
            if conversation.turns.is_empty() || self.current.is_none() {
                let mut session = self.system.clone();
                session.read(&format!("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", conversation.observation)).map_err(fail)?;
                self.current = Some(session);
                self.read_turns = 0;
            }
            let session = self.current.as_mut().expect("set above");
            for (_, answer) in &conversation.turns[self.read_turns..] {
                session.read(&format!("<|im_end|>\n<|im_start|>user\n{answer}<|im_end|>\n<|im_start|>assistant\n")).map_err(fail)?;
            }
            self.read_turns = conversation.turns.len();
            let on_token = &mut self.on_token;
            let generation = session
                .generate(self.sampling, self.max_tokens, &CALL_ENDS, |piece| on_token.as_mut().map_or(Flow::Continue, |f| f(piece)))
                .map_err(fail)?;
            self.generated_tokens += generation.tokens.len();
            Ok(generation.text)
        }
    }
}

#[cfg(feature = "eval")]
pub use planner::PlannerProposer;

#[cfg(feature = "eval")]
mod planner {
    use super::*;
    use crate::agent::decision::{Conversation, Proposer};
    use crate::agent::grammar::{render_action, ToolCall, MAX_SIMULATED};
    use crate::agent::observation::flags;
    use crate::baselines::ai_clinician::AiClinician;
    use crate::guideline::Situation;
    use crate::planner::{best, score_all, situation_of, CandidateScore, MpcConfig};
    use crate::world_model::ensemble::History;

    /// `wm-mpc` writing the agent's grammar: it simulates its three best
    /// supported candidates, then prescribes its best one. The teacher of the
    /// curriculum's behaviour cloning.
    pub struct PlannerProposer<'m> {
        pub model: &'m WorldModel,
        pub support: &'m AiClinician,
        pub config: MpcConfig,
    }

    impl PlannerProposer<'_> {
        fn scores(&self, course: &[CourseStep]) -> Result<Vec<CandidateScore>, AgentError> {
            let history: History = course.iter().map(|s| (s.values.clone(), s.action)).collect();
            let situation = situation_of(&history);
            let logged = self.support.logged_counts(&course.last().expect("non-empty").values);
            let mut all = score_all(self.model, &[history], &[situation], &[logged], &self.config).map_err(|e| AgentError(e.to_string()))?;
            Ok(all.remove(0))
        }
    }

    impl Proposer for PlannerProposer<'_> {
        fn respond(&mut self, course: &[CourseStep], conversation: &Conversation) -> Result<String, AgentError> {
            let scores = self.scores(course)?;
            if conversation.turns.is_empty() {
                let mut ranked: Vec<&CandidateScore> = scores.iter().filter(|c| c.supported).collect();
                ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
                let mut shortlist: Vec<Action> = ranked.iter().take(MAX_SIMULATED).map(|c| c.action).collect();
                if shortlist.is_empty() {
                    shortlist.push(best(&scores).action);
                }
                return Ok(format!("Thought: comparing the best supported options.\n{}", ToolCall::Simulate(shortlist).render()));
            }
            let chosen = best(&scores);
            let situation = Situation::of_course(course);
            Ok(format!(
                "Thought: {} has the best planned survival ({:.0}%) among treatments clinicians use here; flags: {}.\n{}",
                render_action(chosen.action),
                100.0 * chosen.survival,
                flags(&situation, chosen.action),
                ToolCall::Prescribe(chosen.action).render()
            ))
        }
    }
}
