//! LoRA training of the agent on tokenized examples (`Example`): the loss is
//! the cross-entropy of the tokens the model writes, on the dequantized
//! training copy of the model (`Llama::for_training`). Checkpoints (the
//! adapter and the step reached) are written every few steps, and a run with
//! the same checkpoint folder continues from the last one. AdamW's moment
//! estimates are not saved (candle's optimiser does not expose them): a
//! resumed run restarts them, which costs a few steps of warm-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::agent::observation::ObservationFormat;
use crate::llm::model::{KvCache, Llama, LoraAdapter};

use super::example::Example;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraTrainingConfig {
    pub rank: usize,
    pub alpha: f64,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Passes over the training examples.
    pub epochs: usize,
    /// Examples per optimiser step (gradients summed).
    pub batch: usize,
    /// Checkpoint (and validate) every this many steps.
    pub checkpoint_every: usize,
    pub seed: u64,
    /// What the examples' user turns show; every adapter the run writes
    /// records it (absent: the course alone).
    #[serde(default)]
    pub observation: ObservationFormat,
}

/// Where a run is, saved beside the adapter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub step: usize,
    pub best_validation_loss: Option<f64>,
    pub log: Vec<StepLog>,
    /// The configuration and data the run trains on ([`run_of`]): a folder
    /// is resumed only by the same run (absent in states older than it).
    #[serde(default)]
    pub run: Option<String>,
}

/// What identifies a run: what shapes its steps (not how many epochs it
/// runs or how often it checkpoints, which a resumed run may change) and how
/// many examples and tokens it trains on.
pub fn run_of(config: &LoraTrainingConfig, train: &[Example]) -> String {
    let LoraTrainingConfig { rank, alpha, learning_rate, weight_decay, batch, seed, .. } = config;
    let tokens: usize = train.iter().map(|e| e.tokens.len()).sum();
    format!("rank {rank}, alpha {alpha}, learning rate {learning_rate}, weight decay {weight_decay}, batch {batch}, seed {seed}; {} examples, {tokens} tokens", train.len())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    /// Example tokens (whole conversations, the shared prefix counted in
    /// each) per second of training steps: how fast the data is consumed.
    pub tokens_per_second: f64,
}

pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn adapter(&self) -> PathBuf {
        self.dir.join("adapter.safetensors")
    }

    pub fn best_adapter(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// The adapter the last step wrote (to continue from).
    pub fn saved_adapter(&self) -> candle_core::Result<LoraAdapter> {
        read_adapter(&self.adapter())
    }

    /// The best adapter written so far, or `current` when none was.
    pub fn best_or(&self, current: LoraAdapter) -> candle_core::Result<LoraAdapter> {
        let best = self.best_adapter();
        if best.exists() {
            read_adapter(&best)
        } else {
            Ok(current)
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Another file of the run, kept beside the adapters.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn state(&self) -> TrainingState {
        std::fs::read_to_string(self.state_path()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    fn save(&self, vars: &HashMap<String, Var>, config: &LoraTrainingConfig, state: &TrainingState, best: bool) -> candle_core::Result<()> {
        let adapter = adapter_of(vars, config.rank, config.alpha, config.observation);
        adapter.save(&self.adapter())?;
        if best {
            adapter.save(&self.best_adapter())?;
        }
        let text = serde_json::to_string_pretty(state).map_err(candle_core::Error::wrap)?;
        std::fs::write(self.state_path(), text).map_err(candle_core::Error::wrap)
    }
}

/// A run's adapter as variables the optimiser updates in place.
pub(crate) fn variables(adapter: &LoraAdapter) -> candle_core::Result<HashMap<String, Var>> {
    adapter.tensors.iter().map(|(n, t)| Ok((n.clone(), Var::from_tensor(t)?))).collect()
}

fn read_adapter(path: &Path) -> candle_core::Result<LoraAdapter> {
    LoraAdapter::from_safetensors(&std::fs::read(path)?).map_err(candle_core::Error::wrap)
}

pub(crate) fn adapter_of(vars: &HashMap<String, Var>, rank: usize, alpha: f64, observation: ObservationFormat) -> LoraAdapter {
    LoraAdapter { rank, alpha, observation, tensors: vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect() }
}

/// The prompt tokens that all examples of a set begin with (the system turn):
/// read once per step with the current adapter and without gradient, so an
/// example costs only its own tokens. The adapters still learn from every
/// target; they just get no gradient through the shared prompt's keys and
/// values (at inference that prompt is read with the adapter, as here).
pub struct SharedPrefix {
    len: usize,
    cache: KvCache,
}

impl SharedPrefix {
    pub fn none() -> Self {
        Self { len: 0, cache: KvCache::default() }
    }

    /// The longest prefix common to `examples` that holds no target and
    /// leaves each example the position that predicts its first target.
    pub fn common_len(examples: &[Example]) -> usize {
        let Some(first) = examples.first() else { return 0 };
        let mut len = examples.iter().map(|e| e.target.iter().position(|t| *t).unwrap_or(e.tokens.len()).saturating_sub(1)).min().unwrap_or(0);
        for example in &examples[1..] {
            len = len.min(first.tokens.iter().zip(&example.tokens).take_while(|(a, b)| a == b).count());
        }
        len
    }

    pub fn read(model: &Llama, example: &Example, len: usize) -> candle_core::Result<Self> {
        if len == 0 {
            return Ok(Self::none());
        }
        let mut cache = KvCache::default();
        model.hidden(&example.tokens[..len], &mut cache)?;
        Ok(Self { len, cache: cache.detached() })
    }
}

/// The log-probability under `model` of each of `example`'s target tokens
/// (shape: targets), reading the example after `prefix` (whose tokens it
/// must begin with).
pub fn target_log_probs(model: &Llama, example: &Example, prefix: &SharedPrefix) -> candle_core::Result<Tensor> {
    let (n, start) = (example.tokens.len(), prefix.len);
    let hidden = model.hidden(&example.tokens[start..n - 1], &mut prefix.cache.clone())?;
    // Position i predicts token i + 1; row i - start of `hidden` is position i.
    let rows: Vec<u32> = (start..n - 1).filter(|&i| example.target[i + 1]).map(|i| (i - start) as u32).collect();
    let targets: Vec<u32> = rows.iter().map(|&r| example.tokens[start + r as usize + 1]).collect();
    let picked = hidden.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?;
    let log_probs = candle_nn::ops::log_softmax(&model.logits(&picked)?, candle_core::D::Minus1)?;
    log_probs.gather(&Tensor::new(targets.as_slice(), &Device::Cpu)?.unsqueeze(1)?, 1)?.squeeze(1)
}

/// Mean cross-entropy of `example`'s target tokens under `model`.
pub fn example_loss(model: &Llama, example: &Example, prefix: &SharedPrefix) -> candle_core::Result<Tensor> {
    target_log_probs(model, example, prefix)?.mean(0)?.neg()
}

/// Mean loss over `examples` (no gradients kept).
pub fn mean_loss(model: &Llama, examples: &[Example]) -> candle_core::Result<f64> {
    let Some(first) = examples.first() else { return Ok(0.0) };
    let prefix = SharedPrefix::read(model, first, SharedPrefix::common_len(examples))?;
    let mut total = 0.0;
    for example in examples {
        total += example_loss(model, example, &prefix)?.detach().to_scalar::<f32>()? as f64;
    }
    Ok(total / examples.len() as f64)
}

/// Train adapters on `base` (the quantized model; a training copy is made),
/// starting from `init` (a warm start; fresh adapters when `None`) unless
/// the checkpoint folder holds a run to continue.
/// `on_step(step, total_steps, loss)` after each step; `on_log` after each
/// validation. Returns the best adapter by validation loss.
#[allow(clippy::too_many_arguments)]
pub fn train_lora(
    base: &Llama,
    init: Option<&LoraAdapter>,
    train: &[Example],
    validation: &[Example],
    config: &LoraTrainingConfig,
    checkpoint: &Checkpoint,
    mut on_step: impl FnMut(usize, usize, f64),
    mut on_log: impl FnMut(&StepLog),
) -> candle_core::Result<LoraAdapter> {
    let mut model = base.for_training()?;
    let mut state = checkpoint.state();
    let run = run_of(config, train);
    if state.step > 0 && state.run.as_ref().is_some_and(|saved| *saved != run) {
        return Err(candle_core::Error::Msg(format!(
            "{} holds another run (step {}: {}), not this one ({run}): give this run its own --checkpoints folder",
            checkpoint.dir.display(),
            state.step,
            state.run.as_deref().unwrap_or_default()
        )));
    }
    let start = if state.step > 0 && checkpoint.adapter().exists() {
        checkpoint.saved_adapter()?
    } else {
        state = TrainingState { run: Some(run), ..TrainingState::default() };
        match init {
            Some(adapter) if adapter.rank != config.rank || adapter.alpha != config.alpha => {
                return Err(candle_core::Error::Msg(format!("the initial adapter has rank {} and alpha {}; the configuration says {} and {}", adapter.rank, adapter.alpha, config.rank, config.alpha)));
            }
            Some(adapter) => adapter.clone(),
            None => LoraAdapter::initial(base, config.rank, config.alpha, config.seed)?,
        }
    };
    let vars = variables(&start)?;
    model.set_adapter(&adapter_of(&vars, config.rank, config.alpha, config.observation)).map_err(candle_core::Error::wrap)?;
    let mut optimiser = AdamW::new(vars.values().cloned().collect(), ParamsAdamW { lr: config.learning_rate, weight_decay: config.weight_decay, ..Default::default() })?;

    let prefix_len = SharedPrefix::common_len(train);
    let steps_per_epoch = train.len().div_ceil(config.batch);
    let total_steps = steps_per_epoch * config.epochs;
    let (mut recent_loss, mut recent_tokens, mut training_seconds) = (Vec::new(), 0usize, 0.0);
    while state.step < total_steps {
        let epoch = state.step / steps_per_epoch;
        // The same order for an epoch whether or not the run was resumed.
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed ^ epoch as u64));
        let within = state.step % steps_per_epoch;
        let batch = &order[within * config.batch..((within + 1) * config.batch).min(order.len())];
        let clock = Instant::now();
        let mut loss_sum: Option<Tensor> = None;
        let prefix = SharedPrefix::read(&model, &train[batch[0]], prefix_len)?;
        for &i in batch {
            let loss = example_loss(&model, &train[i], &prefix)?;
            recent_tokens += train[i].tokens.len();
            loss_sum = Some(match loss_sum {
                None => loss,
                Some(sum) => (sum + loss)?,
            });
        }
        let loss = (loss_sum.expect("a batch has examples") / batch.len() as f64)?;
        optimiser.backward_step(&loss)?;
        training_seconds += clock.elapsed().as_secs_f64();
        let value = loss.to_scalar::<f32>()? as f64;
        recent_loss.push(value);
        state.step += 1;
        on_step(state.step, total_steps, value);
        if state.step % config.checkpoint_every == 0 || state.step == total_steps {
            let validation_loss = mean_loss(&model, validation)?;
            let log = StepLog {
                step: state.step,
                epoch,
                train_loss: recent_loss.iter().sum::<f64>() / recent_loss.len() as f64,
                validation_loss,
                tokens_per_second: recent_tokens as f64 / training_seconds,
            };
            on_log(&log);
            let best = state.best_validation_loss.is_none_or(|b| validation_loss < b);
            if best {
                state.best_validation_loss = Some(validation_loss);
            }
            state.log.push(log);
            checkpoint.save(&vars, config, &state, best)?;
            (recent_loss, recent_tokens, training_seconds) = (Vec::new(), 0, 0.0);
        }
    }
    // The run's format, also where a folder's adapters predate recording it.
    let best = checkpoint.best_or(adapter_of(&vars, config.rank, config.alpha, config.observation))?;
    Ok(LoraAdapter { observation: config.observation, ..best })
}
