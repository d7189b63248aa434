//! Offline deep RL baseline: a dueling double DQN (Raghu et al. 2017) on
//! standardised clinical features, trained with candle on the logged
//! transitions of the training split. Reward (SepsisAgent, Raghu form):
//! +15 survival / -15 death at the end; each step
//! -0.025 [SOFA unchanged and > 0] - 0.125 dSOFA - 2 tanh(d lactate).
//! Replay is uniform over the logged transitions (Raghu used prioritised
//! replay); targets are clipped to the reward range, which plays the role of
//! their penalty on Q values beyond it.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{linear, AdamW, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cohort::normaliser::Normaliser;
use crate::action::N_ACTIONS;
use crate::cohort::{Cohort, Outcome, Step};
use crate::env::clinical::state_features;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::nn_init::seeded_init;
use crate::policy::PolicyTable;

pub const TERMINAL_REWARD: f64 = 15.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub hidden: usize,
    pub gamma: f64,
    pub learning_rate: f64,
    pub batch: usize,
    pub steps: usize,
    /// Copy the online network into the target network this often.
    pub target_every: usize,
    /// Measure the validation TD error this often.
    pub validate_every: usize,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self { hidden: 128, gamma: 0.99, learning_rate: 1e-4, batch: 256, steps: 30_000, target_every: 1_000, validate_every: 2_000, seed: 2017 }
    }
}

/// Intermediate reward between two consecutive steps of one patient.
pub fn shaping_reward(now: &Step, next: &Step) -> f64 {
    let sofa = |s: &Step| s.value("sofa");
    let lactate = |s: &Step| s.value("lactate");
    let mut r = 0.0;
    if let (Some(a), Some(b)) = (sofa(now), sofa(next)) {
        if a == b && b > 0.0 {
            r -= 0.025;
        }
        r -= 0.125 * (b - a);
    }
    if let (Some(a), Some(b)) = (lactate(now), lactate(next)) {
        r -= 2.0 * (b - a).tanh();
    }
    r
}

/// Logged transitions as flat arrays, ready to batch.
pub struct Transitions {
    features: usize,
    states: Vec<f32>,
    actions: Vec<u32>,
    rewards: Vec<f32>,
    next_states: Vec<f32>,
    done: Vec<f32>,
}

impl Transitions {
    pub fn from_cohort(cohort: &Cohort, standardiser: &Normaliser) -> Self {
        let features = standardiser.mean.len();
        let mut t = Self { features, states: vec![], actions: vec![], rewards: vec![], next_states: vec![], done: vec![] };
        for patient in &cohort.patients {
            for (i, step) in patient.steps.iter().enumerate() {
                let state = standardiser.step(step);
                t.states.extend(state.iter().map(|&v| v as f32));
                t.actions.push(step.action.index() as u32);
                match patient.steps.get(i + 1) {
                    Some(next) => {
                        t.rewards.push(shaping_reward(step, next) as f32);
                        t.next_states.extend(standardiser.step(next).iter().map(|&v| v as f32));
                        t.done.push(0.0);
                    }
                    None => {
                        let end = if patient.outcome == Outcome::Survived { TERMINAL_REWARD } else { -TERMINAL_REWARD };
                        t.rewards.push(end as f32);
                        t.next_states.extend(state.iter().map(|&v| v as f32)); // unused: done
                        t.done.push(1.0);
                    }
                }
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    fn batch(&self, indices: &[usize], dev: &Device) -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor, Tensor)> {
        let f = self.features;
        let rows = |data: &[f32]| indices.iter().flat_map(|&i| data[i * f..(i + 1) * f].iter().copied()).collect::<Vec<f32>>();
        let n = indices.len();
        Ok((
            Tensor::from_vec(rows(&self.states), (n, f), dev)?,
            Tensor::from_vec(indices.iter().map(|&i| self.actions[i]).collect::<Vec<u32>>(), n, dev)?,
            Tensor::from_vec(indices.iter().map(|&i| self.rewards[i]).collect::<Vec<f32>>(), n, dev)?,
            Tensor::from_vec(rows(&self.next_states), (n, f), dev)?,
            Tensor::from_vec(indices.iter().map(|&i| self.done[i]).collect::<Vec<f32>>(), n, dev)?,
        ))
    }
}

/// Q(s, ·) = V(s) + A(s, ·) - mean A(s, ·), over a two-layer ReLU trunk.
pub struct DuelingQ {
    hidden1: Linear,
    hidden2: Linear,
    value: Linear,
    advantage: Linear,
}

impl DuelingQ {
    pub fn new(features: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            hidden1: linear(features, hidden, vb.pp("hidden1"))?,
            hidden2: linear(hidden, hidden, vb.pp("hidden2"))?,
            value: linear(hidden, 1, vb.pp("value"))?,
            advantage: linear(hidden, N_ACTIONS, vb.pp("advantage"))?,
        })
    }
}

impl Module for DuelingQ {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.hidden2.forward(&self.hidden1.forward(x)?.relu()?)?.relu()?;
        let advantage = self.advantage.forward(&h)?;
        let centred = advantage.broadcast_sub(&advantage.mean_keepdim(D::Minus1)?)?;
        self.value.forward(&h)?.broadcast_add(&centred)
    }
}

fn copy_weights(from: &VarMap, to: &VarMap) -> candle_core::Result<()> {
    let source = from.data().lock().expect("varmap lock");
    let target = to.data().lock().expect("varmap lock");
    for (name, var) in source.iter() {
        target[name].set(&var.as_tensor().detach())?;
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub step: usize,
    pub train_loss: f64,
    pub validation_td_error: Option<f64>,
}

/// What ships beside the weights (`ddqn.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub config: Config,
    pub standardiser: Normaliser,
    pub history: Vec<Progress>,
}

pub struct Ddqn {
    pub card: Card,
    varmap: VarMap,
    net: DuelingQ,
}

fn td_loss(online: &DuelingQ, target: &DuelingQ, batch: &(Tensor, Tensor, Tensor, Tensor, Tensor), gamma: f64) -> candle_core::Result<Tensor> {
    let (s, a, r, s_next, done) = batch;
    let q = online.forward(s)?.gather(&a.unsqueeze(1)?, 1)?.squeeze(1)?;
    // Double DQN: the online network picks, the target network values.
    let best = online.forward(s_next)?.argmax_keepdim(1)?;
    let next_q = target.forward(s_next)?.gather(&best, 1)?.squeeze(1)?.detach();
    let continuing = done.affine(-1.0, 1.0)?;
    let y = (r + (next_q * continuing)?.affine(gamma, 0.0)?)?.clamp(-TERMINAL_REWARD as f32, TERMINAL_REWARD as f32)?.detach();
    (q - y)?.sqr()?.mean_all()
}

impl Ddqn {
    pub fn train(train: &Cohort, validation: &Cohort, config: Config, mut on_progress: impl FnMut(&Progress)) -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let standardiser = Normaliser::fit(train);
        let data = Transitions::from_cohort(train, &standardiser);
        let held_out = Transitions::from_cohort(validation, &standardiser);
        let features = standardiser.mean.len();
        let (online_vars, target_vars) = (VarMap::new(), VarMap::new());
        let online = DuelingQ::new(features, config.hidden, VarBuilder::from_varmap(&online_vars, DType::F32, &dev))?;
        let target = DuelingQ::new(features, config.hidden, VarBuilder::from_varmap(&target_vars, DType::F32, &dev))?;
        seeded_init(&online_vars, config.seed)?;
        copy_weights(&online_vars, &target_vars)?;
        let mut optimiser = AdamW::new(online_vars.all_vars(), ParamsAdamW { lr: config.learning_rate, weight_decay: 0.0, ..Default::default() })?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xdd9);
        let validation_batch: Vec<usize> = (0..held_out.len().min(4096)).collect();
        let mut history = Vec::new();
        let mut running = 0.0;
        for step in 1..=config.steps {
            let indices: Vec<usize> = (0..config.batch).map(|_| rng.random_range(0..data.len())).collect();
            let loss = td_loss(&online, &target, &data.batch(&indices, &dev)?, config.gamma)?;
            optimiser.backward_step(&loss)?;
            running = 0.98 * running + 0.02 * loss.to_scalar::<f32>()? as f64;
            if step % config.target_every == 0 {
                copy_weights(&online_vars, &target_vars)?;
            }
            if step % config.validate_every == 0 || step == config.steps {
                let validation_td_error = if held_out.is_empty() {
                    None
                } else {
                    Some(td_loss(&online, &target, &held_out.batch(&validation_batch, &dev)?, config.gamma)?.to_scalar::<f32>()? as f64)
                };
                let progress = Progress { step, train_loss: running, validation_td_error };
                on_progress(&progress);
                history.push(progress);
            }
        }
        Ok(Self { card: Card { config, standardiser, history }, varmap: online_vars, net: online })
    }

    /// Writes `<stem>.safetensors` and `<stem>.json`.
    pub fn save(&self, stem: &Path) -> candle_core::Result<()> {
        self.varmap.save(stem.with_extension("safetensors"))?;
        let card = serde_json::to_string_pretty(&self.card).map_err(candle_core::Error::wrap)?;
        std::fs::write(stem.with_extension("json"), card).map_err(candle_core::Error::wrap)
    }

    pub fn load(stem: &Path) -> candle_core::Result<Self> {
        let text = std::fs::read_to_string(stem.with_extension("json")).map_err(candle_core::Error::wrap)?;
        let card: Card = serde_json::from_str(&text).map_err(candle_core::Error::wrap)?;
        let mut varmap = VarMap::new();
        let net = DuelingQ::new(card.standardiser.mean.len(), card.config.hidden, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
        varmap.load(stem.with_extension("safetensors"))?;
        Ok(Self { card, varmap, net })
    }

    /// Q values for a batch of steps' clinical values.
    pub fn q_values(&self, rows: &[Vec<Option<f64>>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let features: Vec<f32> = rows.iter().flat_map(|v| self.card.standardiser.transform(v)).map(|z| z as f32).collect();
        let x = Tensor::from_vec(features, (rows.len(), self.card.standardiser.mean.len()), &Device::Cpu)?;
        self.net.forward(&x)?.to_vec2()
    }

    /// Greedy policy on every ICU-Sepsis patient state.
    pub fn policy_table(&self, env: &IcuSepsis) -> candle_core::Result<PolicyTable> {
        let rows: Vec<Vec<Option<f64>>> = (0..N_PATIENT_STATES).map(|s| state_features(env, s)).collect();
        let actions: Vec<usize> = self
            .q_values(&rows)?
            .iter()
            .map(|q| q.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(a, _)| a).unwrap_or(0))
            .collect();
        PolicyTable::deterministic(&actions).map_err(candle_core::Error::wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::cohort::schema::{idx, FEATURES};
    use crate::cohort::Patient;

    fn step(sofa: f64, lactate: f64, map: f64, action: Action, index: u32) -> Step {
        let mut values = vec![Some(1.0); FEATURES.len()];
        values[idx("sofa")] = Some(sofa);
        values[idx("lactate")] = Some(lactate);
        values[idx("map")] = Some(map);
        Step { index, values, action, state: None }
    }

    #[test]
    fn shaping_follows_the_raghu_form() {
        let a = step(5.0, 2.0, 70.0, Action::NONE, 0);
        let same = step(5.0, 2.0, 70.0, Action::NONE, 1);
        assert!((shaping_reward(&a, &same) + 0.025).abs() < 1e-12);
        let better = step(3.0, 1.0, 70.0, Action::NONE, 1);
        let expected = 0.125 * 2.0 + 2.0 * 1f64.tanh();
        assert!((shaping_reward(&a, &better) - expected).abs() < 1e-12);
    }

    /// Low-MAP patients survive with fluid and die without; others survive.
    fn cohort(n: usize) -> Cohort {
        let patients = (0..n)
            .map(|i| {
                let low = i % 2 == 0;
                let treated = i % 4 < 2;
                let action = if treated { Action { fluid: 1, vaso: 0 } } else { Action::NONE };
                let map = if low { 55.0 } else { 85.0 };
                Patient {
                    id: format!("p{i}"),
                    steps: vec![step(4.0, 2.0, map, action, 0)],
                    outcome: if !low || treated { Outcome::Survived } else { Outcome::Died },
                }
            })
            .collect();
        Cohort { patients }
    }

    #[test]
    fn every_parameter_receives_gradient() {
        let dev = Device::Cpu;
        let data = cohort(64);
        let standardiser = Normaliser::fit(&data);
        let transitions = Transitions::from_cohort(&data, &standardiser);
        let vars = VarMap::new();
        let net = DuelingQ::new(standardiser.mean.len(), 16, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
        seeded_init(&vars, 1).unwrap();
        let batch = transitions.batch(&(0..64).collect::<Vec<_>>(), &dev).unwrap();
        let loss = td_loss(&net, &net, &batch, 0.99).unwrap();
        let grads = loss.backward().unwrap();
        let all = vars.all_vars();
        assert_eq!(all.len(), 8, "4 layers x (weight, bias)");
        for var in all {
            let grad = grads.get(&var).expect("a gradient for every parameter");
            assert!(grad.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
        }
    }

    #[test]
    fn learns_that_fluid_saves_low_map_patients() {
        let config = Config { hidden: 32, steps: 600, batch: 64, learning_rate: 3e-3, target_every: 100, validate_every: 300, ..Config::default() };
        let model = Ddqn::train(&cohort(400), &cohort(40), config, |_| {}).unwrap();
        let low = step(4.0, 2.0, 55.0, Action::NONE, 0).values;
        let q = &model.q_values(&[low]).unwrap()[0];
        let (fluid, none) = (q[Action { fluid: 1, vaso: 0 }.index()], q[0]);
        assert!(fluid > none + 5.0, "Q(fluid) {fluid} vs Q(none) {none}");
        assert_eq!(model.card.history.len(), 2);
        assert!(model.card.history[1].validation_td_error.unwrap() < model.card.history[0].train_loss.max(1.0) * 10.0);
    }

    #[test]
    fn save_and_load_give_the_same_q_values() {
        let config = Config { hidden: 8, steps: 20, batch: 16, validate_every: 10, ..Config::default() };
        let model = Ddqn::train(&cohort(40), &cohort(8), config, |_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("ddqn");
        model.save(&stem).unwrap();
        let back = Ddqn::load(&stem).unwrap();
        let row = vec![step(4.0, 2.0, 60.0, Action::NONE, 0).values];
        assert_eq!(model.q_values(&row).unwrap(), back.q_values(&row).unwrap());
        assert_eq!(back.card, model.card);
    }
}
