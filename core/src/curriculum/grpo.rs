//! Stage 3: the agent acts inside the learned world model and learns from
//! what follows (GRPO with one update per group). For each training state
//! the current policy makes a group of decisions through the real loop
//! (sampled at `temperature`, the world model answering its simulate calls);
//! each prescription is rewarded by the world model (`reward.rs`), and each
//! decision's advantage is its reward against its group's mean, in units of
//! the group's SD. The loss raises the log-likelihood of every token the
//! agent wrote in proportion to its advantage, with a per-token KL penalty
//! (the k3 estimator) to the stage-2 policy it started from.
//!
//! Each group is used for one gradient step, on-policy, so GRPO's clipped
//! ratio is 1 and is left out. A group whose decisions all earn the same
//! reward carries no signal and costs no backward pass. The log-likelihood
//! is the full-vocabulary one on the training copy; constrained decoding
//! sampled the call's options renormalised over what the grammar allowed, so
//! the gradient also moves probability away from tokens the grammar never
//! offers, which the KL term bounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::agent::decision::{AgentError, Decision, Trace};
use crate::agent::observation::{system_prompt, LoggedPractice, ObservationFormat};
use crate::agent::runtime::{system_session, Decoding, LlmProposer, WorldModelSimulator};
use crate::baselines::ai_clinician::AiClinician;
use crate::llm::generate::{Llm, Sampling, Session};
use crate::llm::model::{Llama, LoraAdapter};
use crate::simulation::CourseStep;
use crate::world_model::WorldModel;

use super::example::Example;
use super::lora_training::{adapter_of, target_log_probs, variables, Checkpoint, SharedPrefix};
use super::reward::{reward_table, Reward, RewardConfig};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrpoConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Training states per step (each a group).
    pub states_per_step: usize,
    /// Decisions sampled per state.
    pub group: usize,
    pub temperature: f64,
    /// Weight of the per-token KL to the starting (stage-2) policy.
    pub kl_weight: f64,
    pub learning_rate: f64,
    /// Validate (greedy decisions on the validation states) and checkpoint
    /// every this many steps.
    pub checkpoint_every: usize,
    pub seed: u64,
    pub reward: RewardConfig,
}

/// What one step did, logged to the checkpoint folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrpoStepLog {
    pub step: usize,
    /// Mean reward of the sampled decisions.
    pub mean_reward: f64,
    /// Groups whose decisions did not all earn the same reward.
    pub groups_with_signal: usize,
    pub groups: usize,
    /// Distinct prescriptions per group, averaged.
    pub distinct_prescriptions: f64,
    /// Decisions that gave no example (a fallback, or a turn that does not
    /// read back as written); the first one's reason.
    #[serde(default)]
    pub skipped: usize,
    #[serde(default)]
    pub skipped_because: Option<String>,
    /// Mean per-token KL to the starting policy over the trained decisions.
    pub kl: f64,
    pub seconds: f64,
}

/// The greedy policy on the fixed validation states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrpoValidation {
    pub step: usize,
    pub mean_reward: f64,
    pub mean_survival: f64,
    /// Shares of the validation decisions.
    pub unsupported: f64,
    pub with_violations: f64,
    /// How often each action was prescribed (index order).
    pub prescriptions: Vec<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpoState {
    /// Steps done.
    pub step: usize,
    pub best_validation_reward: Option<f64>,
    pub log: Vec<GrpoStepLog>,
    pub validations: Vec<GrpoValidation>,
}

const STATE_FILE: &str = "grpo-state.json";

/// Each decision's advantage within its group: (reward - mean) / SD; all
/// zero when the rewards are (nearly) equal.
pub fn group_advantages(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len() as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let sd = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd < 1e-6 {
        return vec![0.0; rewards.len()];
    }
    rewards.iter().map(|r| (r - mean) / sd).collect()
}

/// Whether what the agent proposes in a state decides what it prescribes:
/// more treatments are in support than a simulate call may list. With
/// supported proposals and the prescribed best (`Decoding::DEFAULT`) the
/// loop prescribes the best of what was simulated, so where every supported
/// treatment fits in one call, every decision of a group prescribes the same
/// and the group carries no signal.
pub fn proposal_decides(logged: &LoggedPractice) -> bool {
    logged.supported_actions().count() > crate::agent::grammar::MAX_SIMULATED
}

/// A state the agent decides in, with every action's reward.
pub struct RewardedState {
    pub course: Vec<CourseStep>,
    /// What clinicians gave in states like its newest (shown to adapters
    /// whose observation format shows it).
    pub logged: LoggedPractice,
    pub rewards: Vec<Reward>,
}

impl RewardedState {
    pub fn new(model: &WorldModel, support: &AiClinician, course: Vec<CourseStep>, config: &RewardConfig, seed: u32) -> candle_core::Result<Self> {
        let logged = support.practice(&course.last().expect("a course has at least one step").values);
        let rewards = reward_table(model, &course, &logged, config, seed)?;
        Ok(Self { course, logged, rewards })
    }
}

/// One decision in `state` through the real loop with the world model as
/// simulator, the observation in `format`, decoded as the app decodes. The
/// situation words faithful decoding writes for the model are the same in
/// every decision of a group, so their share of the policy gradient cancels
/// against the group's mean reward. The prescribed best (since 2026-11-29,
/// after the shipped adapter was trained) follows from what was proposed,
/// so its stated survival and its prescription differ within a group and
/// are reinforced with the proposal that led to them, as the teacher's
/// rationale is imitated in stage 2.
pub fn decide_once(system: &Session, model: &WorldModel, state: &RewardedState, format: ObservationFormat, sampling: Sampling) -> Result<(Trace, crate::agent::decision::Conversation), AgentError> {
    let mut proposer = LlmProposer::new(system.clone(), sampling, Decoding::DEFAULT);
    let mut simulator = WorldModelSimulator { model, samples: 16, seed: sampling.seed as u32 };
    let mut decision = Decision::new(&mut proposer, Some(&mut simulator), &state.course, format.shown(&state.logged));
    let trace = decision.run(&mut |_| {})?;
    Ok((trace, decision.conversation().clone()))
}

#[derive(Debug, thiserror::Error)]
pub enum GrpoError {
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Adapter(#[from] crate::llm::model::AdapterError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Train the adapter `init` (stages 1 and 2) by GRPO on `train` (one state
/// per group, in order, `states_per_step` per step), validating on
/// `validation`; resumes from `checkpoint`. Returns the adapter with the
/// best validation reward.
#[allow(clippy::too_many_arguments)]
pub fn train_grpo(
    llm: &Llm,
    init: &LoraAdapter,
    train: &[RewardedState],
    validation: &[RewardedState],
    model: &WorldModel,
    config: &GrpoConfig,
    checkpoint: &Checkpoint,
    mut on_step: impl FnMut(&GrpoStepLog),
    mut on_validation: impl FnMut(&GrpoValidation),
) -> Result<LoraAdapter, GrpoError> {
    let thought_limit = match Decoding::DEFAULT {
        Decoding::Constrained { thought_tokens, .. } => thought_tokens,
        Decoding::Free { .. } => unreachable!("the default is constrained"),
    };
    // The policy reads what its stage-2 adapter learnt to read; every
    // state's practice comes from the same support model (with no states,
    // nothing is decided and the threshold is never read).
    let min_support = train.first().map_or(crate::action::MIN_SUPPORT, |s| s.logged.min_support);
    let prompt = system_prompt(true, init.observation.practice_threshold(min_support));
    let state_path = checkpoint.file(STATE_FILE);
    let mut state: GrpoState = std::fs::read_to_string(&state_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let start = if state.step > 0 && checkpoint.adapter().exists() {
        checkpoint.saved_adapter()?
    } else {
        state = GrpoState::default();
        init.clone()
    };
    let vars = variables(&start)?;
    let lora = |vars: &HashMap<String, Var>| adapter_of(vars, init.rank, init.alpha, init.observation);
    let mut trained = llm.model.for_training()?;
    trained.set_adapter(&lora(&vars))?;
    let mut reference = llm.model.for_training()?;
    reference.set_adapter(init)?;
    let mut optimiser = AdamW::new(vars.values().cloned().collect(), ParamsAdamW { lr: config.learning_rate, weight_decay: 0.0, ..Default::default() })?;

    // The system prompt read by the quantized model with the current adapter.
    let policy = |vars: &HashMap<String, Var>| -> Result<Session, GrpoError> {
        // A detached copy: the optimiser updates the variables in place.
        let adapter = lora(vars);
        let adapter = LoraAdapter { tensors: adapter.tensors.iter().map(|(n, t)| Ok((n.clone(), t.copy()?))).collect::<candle_core::Result<_>>()?, ..adapter };
        Ok(system_session(&Arc::new(llm.with_adapter(&adapter)?), &prompt)?)
    };
    let save = |vars: &HashMap<String, Var>, state: &GrpoState, best: bool| -> Result<(), GrpoError> {
        let adapter = lora(vars);
        adapter.save(&checkpoint.adapter())?;
        if best {
            adapter.save(&checkpoint.best_adapter())?;
        }
        std::fs::write(&state_path, serde_json::to_string_pretty(state)?)?;
        Ok(())
    };
    let mut validate = |vars: &HashMap<String, Var>, state: &mut GrpoState| -> Result<(), GrpoError> {
        let system = policy(vars)?;
        let mut prescriptions = vec![0usize; crate::action::N_ACTIONS];
        let (mut reward, mut survival, mut unsupported, mut violating) = (0.0, 0.0, 0.0, 0.0);
        for rewarded in validation {
            let (trace, _) = decide_once(&system, model, rewarded, init.observation, Sampling::GREEDY)?;
            let r = &rewarded.rewards[trace.prescription.index()];
            prescriptions[trace.prescription.index()] += 1;
            reward += r.total;
            survival += r.survival;
            unsupported += (!r.supported) as u8 as f64;
            violating += (r.violations > 0) as u8 as f64;
        }
        let n = validation.len().max(1) as f64;
        let result = GrpoValidation { step: state.step, mean_reward: reward / n, mean_survival: survival / n, unsupported: unsupported / n, with_violations: violating / n, prescriptions };
        on_validation(&result);
        // Ties go to the later adapter: more training at the same validation reward.
        let best = state.best_validation_reward.is_none_or(|b| result.mean_reward >= b);
        if best {
            state.best_validation_reward = Some(result.mean_reward);
        }
        state.validations.push(result);
        save(vars, state, best)
    };
    if state.step == 0 && state.validations.is_empty() && !validation.is_empty() {
        validate(&vars, &mut state)?;
    }

    while state.step < config.steps {
        let clock = Instant::now();
        let system = policy(&vars)?;
        // The decisions to train on and their advantages.
        let (mut examples, mut advantages) = (Vec::new(), Vec::new());
        let (mut reward_sum, mut decisions, mut with_signal, mut distinct) = (0.0, 0usize, 0usize, 0usize);
        let (mut skipped, mut skipped_because) = (0, None);
        for g in 0..config.states_per_step {
            let index = (state.step * config.states_per_step + g) % train.len().max(1);
            let Some(rewarded) = train.get(index) else { break };
            let mut group = Vec::with_capacity(config.group);
            for member in 0..config.group {
                let seed = config.seed ^ ((state.step as u64) << 32) ^ ((g as u64) << 16) ^ member as u64;
                let (trace, conversation) = decide_once(&system, model, rewarded, init.observation, Sampling { temperature: config.temperature, top_p: 1.0, seed })?;
                // A decision that fell back to the safe default wrote no
                // prescription to learn from (constrained decoding makes it
                // rare). The thought is tokenized again from its text, which
                // may take a token or two more than were sampled: the limit
                // only guards against teacher text the agent could not write.
                let example = match Example::from_decision(&llm.tokenizer, &prompt, &conversation, &trace, 2 * thought_limit) {
                    Ok(example) => example,
                    Err(e) => {
                        skipped += 1;
                        skipped_because.get_or_insert(e.to_string());
                        continue;
                    }
                };
                group.push((example, rewarded.rewards[trace.prescription.index()].total, trace.prescription));
            }
            let rewards: Vec<f64> = group.iter().map(|(_, r, _)| *r).collect();
            reward_sum += rewards.iter().sum::<f64>();
            decisions += rewards.len();
            let mut actions: Vec<Action> = group.iter().map(|(_, _, a)| *a).collect();
            actions.sort_by_key(|a| a.index());
            actions.dedup();
            distinct += actions.len();
            let group_advantages = group_advantages(&rewards);
            if group_advantages.iter().any(|a| *a != 0.0) {
                with_signal += 1;
            }
            for ((example, _, _), advantage) in group.into_iter().zip(group_advantages).filter(|(_, a)| *a != 0.0) {
                examples.push(example);
                advantages.push(advantage);
            }
        }
        let kl = if examples.is_empty() { 0.0 } else { update(&trained, &reference, &examples, &advantages, config.kl_weight, &vars, &mut optimiser)? };
        state.step += 1;
        let log = GrpoStepLog {
            step: state.step,
            mean_reward: reward_sum / decisions.max(1) as f64,
            groups_with_signal: with_signal,
            groups: config.states_per_step,
            distinct_prescriptions: distinct as f64 / config.states_per_step as f64,
            skipped,
            skipped_because,
            kl,
            seconds: clock.elapsed().as_secs_f64(),
        };
        on_step(&log);
        state.log.push(log);
        if state.step % config.checkpoint_every == 0 || state.step == config.steps {
            validate(&vars, &mut state)?;
        } else {
            save(&vars, &state, false)?;
        }
    }
    Ok(checkpoint.best_or(lora(&vars))?)
}

/// One gradient step on the samples' mean GRPO loss; returns the mean
/// per-token KL to the reference policy. Each sample's graph is
/// differentiated and dropped before the next is built (a group's graphs
/// together outgrow this machine's memory); the gradients are summed.
#[allow(clippy::too_many_arguments)]
fn update(trained: &Llama, reference: &Llama, examples: &[Example], advantages: &[f64], kl_weight: f64, vars: &HashMap<String, Var>, optimiser: &mut AdamW) -> Result<f64, GrpoError> {
    let prefix_len = SharedPrefix::common_len(examples);
    let prefix = SharedPrefix::read(trained, &examples[0], prefix_len)?;
    let reference_prefix = SharedPrefix::read(reference, &examples[0], prefix_len)?;
    let mut kl_sum = 0.0;
    let mut sums: HashMap<&str, Tensor> = HashMap::new();
    let mut last = None;
    for (example, advantage) in examples.iter().zip(advantages) {
        let log_probs = target_log_probs(trained, example, &prefix)?;
        let reference_log_probs = target_log_probs(reference, example, &reference_prefix)?.detach();
        // k3: exp(r - p) - (r - p) - 1, unbiased for KL(policy || reference) and never negative.
        let difference = (reference_log_probs - &log_probs)?;
        let kl = ((difference.exp()? - &difference)? - 1.0)?.mean(0)?;
        kl_sum += kl.to_scalar::<f32>()? as f64;
        let loss = (((log_probs.mean(0)? * -advantage)? + (kl * kl_weight)?)? / examples.len() as f64)?;
        let grads = loss.backward()?;
        for (name, var) in vars {
            if let Some(grad) = grads.get(var.as_tensor()) {
                let grad = grad.detach();
                let sum = match sums.remove(name.as_str()) {
                    Some(sum) => (sum + grad)?,
                    None => grad,
                };
                sums.insert(name, sum);
            }
        }
        last = Some(grads);
    }
    let mut grads = last.expect("examples is not empty");
    for (name, var) in vars {
        if let Some(sum) = sums.remove(name.as_str()) {
            grads.insert(var.as_tensor(), sum);
        }
    }
    optimiser.step(&grads)?;
    Ok(kl_sum / examples.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_standardised_within_the_group() {
        let a = group_advantages(&[1.0, 2.0, 3.0, 2.0]);
        assert!((a.iter().sum::<f64>()).abs() < 1e-12);
        assert!((a.iter().map(|x| x * x).sum::<f64>() / 4.0 - 1.0).abs() < 1e-12);
        assert!(a[2] > 0.0 && a[0] < 0.0 && a[1] == 0.0);
        assert_eq!(group_advantages(&[0.5, 0.5, 0.5]), vec![0.0; 3], "no signal when all agree");
    }

    #[test]
    fn the_proposal_decides_only_where_more_is_supported_than_one_call_lists() {
        let practice = |supported: usize| {
            let mut counts = [5; crate::action::N_ACTIONS];
            counts[..supported].iter_mut().for_each(|c| *c = 106);
            LoggedPractice { counts, min_support: 106 }
        };
        let max = crate::agent::grammar::MAX_SIMULATED;
        assert!(!proposal_decides(&practice(0)));
        assert!(!proposal_decides(&practice(max)), "every supported treatment fits in one call");
        assert!(proposal_decides(&practice(max + 1)));
    }
}
