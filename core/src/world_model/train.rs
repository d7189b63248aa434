//! Training the ensemble natively (`sepsis train world-model`): members one
//! after another, each with its own seed and data order, validation each
//! epoch, early stopping, and a checkpoint after every epoch so an
//! interrupted run resumes where it stopped (optimiser moments restart from
//! zero on resume; the data order does not change). Runs may share a
//! checkpoint folder, each training its own members (one per core); the
//! model is exported once every member has finished.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::card::{EpochLog, MemberState, ModelCard};
use super::data::Windows;
use super::model::{loss, Member, Targets, WorldModelConfig};
use crate::nn_init::seeded_init;

pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn path(&self, member: usize, what: &str) -> PathBuf {
        self.dir.join(format!("member-{member}.{what}"))
    }

    pub fn state(&self, member: usize) -> MemberState {
        std::fs::read_to_string(self.path(member, "json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    fn save_state(&self, member: usize, state: &MemberState) -> candle_core::Result<()> {
        let text = serde_json::to_string_pretty(state).map_err(candle_core::Error::wrap)?;
        // Write then rename, so an interruption never leaves half a file.
        let tmp = self.path(member, "json.tmp");
        std::fs::write(&tmp, text).map_err(candle_core::Error::wrap)?;
        std::fs::rename(tmp, self.path(member, "json")).map_err(candle_core::Error::wrap)
    }

    pub fn latest_weights(&self, member: usize) -> PathBuf {
        self.path(member, "latest.safetensors")
    }

    pub fn best_weights(&self, member: usize) -> PathBuf {
        self.path(member, "best.safetensors")
    }

    /// Every member's state once all `members` have finished; else the
    /// members still to train.
    pub fn all_finished(&self, members: usize) -> Result<Vec<MemberState>, Vec<usize>> {
        let states: Vec<MemberState> = (0..members).map(|m| self.state(m)).collect();
        let unfinished: Vec<usize> = (0..members).filter(|&m| !states[m].finished).collect();
        if unfinished.is_empty() { Ok(states) } else { Err(unfinished) }
    }
}

/// One batch as tensors: the input windows and what they predict.
pub fn batch(windows: &Windows, indices: &[usize], dev: &Device) -> candle_core::Result<(Tensor, Targets)> {
    let (w, d, y) = (windows.window, windows.input_dim, windows.dynamic_dim);
    let n = indices.len();
    let gather = |data: &[f32], width: usize| indices.iter().flat_map(|&i| data[i * width..(i + 1) * width].iter().copied()).collect::<Vec<f32>>();
    let per_value = |data: &[f32]| Tensor::from_vec(gather(data, y), (n, y), dev);
    Ok((
        Tensor::from_vec(gather(&windows.inputs, w * d), (n, w, d), dev)?,
        Targets {
            next: per_value(&windows.next)?,
            next_mask: per_value(&windows.next_mask)?,
            current: per_value(&windows.current)?,
            current_mask: per_value(&windows.current_mask)?,
            died: Tensor::from_vec(indices.iter().map(|&i| windows.died[i]).collect::<Vec<f32>>(), n, dev)?,
        },
    ))
}

/// Mean loss and dynamics NLL over a whole set, in batches.
pub fn validation_loss(member: &Member, windows: &Windows, config: &WorldModelConfig, dev: &Device) -> candle_core::Result<(f64, f64)> {
    let (mut total, mut dynamics, mut batches) = (0.0, 0.0, 0.0);
    let indices: Vec<usize> = (0..windows.len()).collect();
    for chunk in indices.chunks(1024) {
        let (x, targets) = batch(windows, chunk, dev)?;
        let (l, d) = loss(&member.forward(&x)?, &targets, config.outcome_weight)?;
        let weight = chunk.len() as f64;
        total += l.to_scalar::<f32>()? as f64 * weight;
        dynamics += d.to_scalar::<f32>()? as f64 * weight;
        batches += weight;
    }
    Ok((total / batches, dynamics / batches))
}

/// Member `member`'s seed: its initialisation, data order and bootstrap sample.
pub fn member_seed(config: &WorldModelConfig, member: usize) -> u64 {
    config.seed.wrapping_mul(1000).wrapping_add(member as u64)
}

/// The training windows member `member` learns from: every window, or with
/// `config.bootstrap` the windows of as many patients drawn with replacement
/// (a patient drawn twice counts twice). Drawn by patient, not by window, as
/// a patient's windows are not independent.
pub fn member_examples(train: &Windows, config: &WorldModelConfig, member: usize) -> Vec<usize> {
    if !config.bootstrap {
        return (0..train.len()).collect();
    }
    let patients = train.patient.iter().max().map_or(0, |&p| p as usize + 1);
    let mut windows_of: Vec<Vec<usize>> = vec![Vec::new(); patients];
    for (i, &p) in train.patient.iter().enumerate() {
        windows_of[p as usize].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(member_seed(config, member) ^ 0xB0_0757);
    (0..patients).flat_map(|_| windows_of[rng.random_range(0..patients)].iter().copied()).collect()
}

/// Train (or resume) one member; its best weights end in the checkpoint folder.
/// `on_batch(epoch, batch, batches per epoch, running train loss)`.
pub fn train_member(
    member: usize,
    train: &Windows,
    validation: &Windows,
    config: &WorldModelConfig,
    checkpoints: &Checkpoints,
    mut on_batch: impl FnMut(usize, usize, usize, f64),
    mut on_epoch: impl FnMut(&EpochLog),
) -> candle_core::Result<MemberState> {
    let dev = Device::Cpu;
    let mut state = checkpoints.state(member);
    if state.finished {
        return Ok(state);
    }
    let mut varmap = VarMap::new();
    let model = Member::new(train.input_dim, train.dynamic_dim, config, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let member_seed = member_seed(config, member);
    let examples = member_examples(train, config, member);
    if state.epochs_done > 0 {
        varmap.load(checkpoints.latest_weights(member))?;
    } else {
        seeded_init(&varmap, member_seed)?;
    }
    let mut optimiser = AdamW::new(varmap.all_vars(), ParamsAdamW { lr: config.learning_rate, weight_decay: 1e-5, ..Default::default() })?;
    let batches_per_epoch = examples.len().div_ceil(config.batch);
    for epoch in state.epochs_done + 1..=config.epochs {
        let started = Instant::now();
        let mut order = examples.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(member_seed ^ ((epoch as u64) << 20)));
        let mut running = 0.0;
        for (b, chunk) in order.chunks(config.batch).enumerate() {
            let (x, targets) = batch(train, chunk, &dev)?;
            let (total, _) = loss(&model.forward(&x)?, &targets, config.outcome_weight)?;
            optimiser.backward_step(&total)?;
            running += total.to_scalar::<f32>()? as f64;
            on_batch(epoch, b + 1, batches_per_epoch, running / (b + 1) as f64);
        }
        let (validation_loss, validation_dynamics_nll) = validation_loss(&model, validation, config, &dev)?;
        let log = EpochLog {
            member,
            epoch,
            train_loss: running / batches_per_epoch as f64,
            validation_loss,
            validation_dynamics_nll,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_epoch(&log);
        state.history.push(log);
        state.epochs_done = epoch;
        varmap.save(checkpoints.latest_weights(member))?;
        if state.best_validation_loss.is_none_or(|best| validation_loss < best) {
            state.best_validation_loss = Some(validation_loss);
            state.best_epoch = epoch;
            varmap.save(checkpoints.best_weights(member))?;
        }
        state.finished = epoch == config.epochs || epoch - state.best_epoch >= config.patience;
        checkpoints.save_state(member, &state)?;
        if state.finished {
            break;
        }
    }
    Ok(state)
}

/// Gather every member's best weights into one safetensors file
/// (`member{k}.` prefixes) and write the card beside it.
pub fn export(card: &ModelCard, checkpoints: &Checkpoints, stem: &Path) -> candle_core::Result<()> {
    let mut tensors = std::collections::HashMap::new();
    for member in 0..card.config.members {
        for (name, tensor) in candle_core::safetensors::load(checkpoints.best_weights(member), &Device::Cpu)? {
            tensors.insert(format!("member{member}.{name}"), tensor);
        }
    }
    candle_core::safetensors::save(&tensors, stem.with_extension("safetensors"))?;
    let text = serde_json::to_string_pretty(card).map_err(candle_core::Error::wrap)?;
    std::fs::write(stem.with_extension("json"), text).map_err(candle_core::Error::wrap)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::action::Action;
    use crate::cohort::normaliser::Normaliser;
    use crate::world_model::data::Layout;
    use crate::cohort::schema::{idx, FEATURES};
    use crate::cohort::{Cohort, Outcome, Patient, Step};

    /// MAP rises by 5 mmHg per step with fluid and falls by 5 without;
    /// patients whose MAP ends low die.
    pub(crate) fn cohort(patients: usize) -> Cohort {
        let patients = (0..patients)
            .map(|p| {
                let mut map = 60.0 + (p % 7) as f64;
                let steps: Vec<Step> = (0..5)
                    .map(|t| {
                        let fluid = ((p + t) % 3 == 0) as u8;
                        let mut values = vec![Some(1.0 + (p % 3) as f64); FEATURES.len()];
                        values[idx("map")] = Some(map);
                        map += if fluid == 1 { 5.0 } else { -5.0 };
                        Step { index: t as u32, values, action: Action { fluid, vaso: 0 }, state: None }
                    })
                    .collect();
                Patient { id: format!("p{p}"), steps, outcome: if map < 50.0 { Outcome::Died } else { Outcome::Survived } }
            })
            .collect();
        Cohort { patients }
    }

    fn windows(patients: usize, normaliser: &Normaliser) -> Windows {
        Windows::build(&cohort(patients), normaliser, &Layout::default(), 6)
    }

    #[test]
    fn bootstrap_members_each_learn_from_their_own_resample_of_patients() {
        let normaliser = Normaliser::fit(&cohort(200));
        let w = windows(200, &normaliser);
        let plain = WorldModelConfig::default();
        assert_eq!(member_examples(&w, &plain, 0), (0..w.len()).collect::<Vec<_>>(), "without bootstrap: every window");
        let config = WorldModelConfig { bootstrap: true, ..plain };
        let patients_of = |m: usize| {
            let mut p: Vec<u32> = member_examples(&w, &config, m).iter().map(|&i| w.patient[i]).collect();
            p.dedup(); // a patient's windows are consecutive: one entry per draw
            p
        };
        let (first, second) = (patients_of(0), patients_of(1));
        assert_eq!(first.len(), 200, "as many draws as patients");
        let distinct = |p: &[u32]| p.iter().collect::<std::collections::HashSet<_>>().len();
        // With replacement about 1 - 1/e = 63% of patients are drawn at least once.
        assert!((100..=150).contains(&distinct(&first)), "{} distinct patients", distinct(&first));
        assert_ne!(first, second, "each member draws its own sample");
        assert_eq!(patients_of(0), first, "the same member draws the same sample on resume");
    }

    #[test]
    fn every_parameter_receives_gradient() {
        let dev = Device::Cpu;
        let normaliser = Normaliser::fit(&cohort(20));
        let w = windows(20, &normaliser);
        let varmap = VarMap::new();
        let model = Member::new(w.input_dim, w.dynamic_dim, &WorldModelConfig { hidden: 16, outcome_hidden: 8, ..Default::default() }, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        seeded_init(&varmap, 3).unwrap();
        let (x, targets) = batch(&w, &(0..w.len()).collect::<Vec<_>>(), &dev).unwrap();
        let (total, _) = loss(&model.forward(&x).unwrap(), &targets, 1.0).unwrap();
        let grads = total.backward().unwrap();
        let vars = varmap.data().lock().unwrap();
        assert_eq!(vars.len(), 20, "3 GRUs x 4 + 4 heads x 2");
        for (name, var) in vars.iter() {
            let g = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "zero gradient for {name}");
        }
    }

    #[test]
    fn training_lowers_validation_loss_and_resumes_from_checkpoints() {
        let normaliser = Normaliser::fit(&cohort(200));
        let (train, validation) = (windows(200, &normaliser), windows(40, &normaliser));
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path()).unwrap();
        let mut config = WorldModelConfig { hidden: 32, members: 1, epochs: 1, batch: 64, learning_rate: 3e-3, patience: 10, ..Default::default() };
        let first = train_member(0, &train, &validation, &config, &checkpoints, |_, _, _, _| {}, |_| {}).unwrap();
        assert_eq!((first.epochs_done, first.finished), (1, true));
        // "Interrupted" after one epoch: asking for more epochs resumes at epoch 2.
        config.epochs = 8;
        std::fs::write(dir.path().join("member-0.json"), serde_json::to_string(&MemberState { finished: false, ..first.clone() }).unwrap()).unwrap();
        let mut epochs_run = Vec::new();
        let resumed = train_member(0, &train, &validation, &config, &checkpoints, |_, _, _, _| {}, |log| epochs_run.push(log.epoch)).unwrap();
        assert_eq!(epochs_run, (2..=8).collect::<Vec<_>>());
        assert_eq!(resumed.history.len(), 8);
        let losses: Vec<f64> = resumed.history.iter().map(|h| h.validation_loss).collect();
        assert!(losses[7] < losses[0] - 0.3, "validation loss {losses:?}");
        assert!(checkpoints.best_weights(0).exists());
        // A finished member is not trained again.
        let again = train_member(0, &train, &validation, &config, &checkpoints, |_, _, _, _| panic!("no training"), |_| {}).unwrap();
        assert_eq!(again, resumed);
    }

    /// Two runs sharing a folder, one member each: the ensemble is complete
    /// only when both have finished, whichever finishes last.
    #[test]
    fn members_trained_apart_complete_the_ensemble_together() {
        let normaliser = Normaliser::fit(&cohort(60));
        let (train, validation) = (windows(60, &normaliser), windows(20, &normaliser));
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path()).unwrap();
        let config = WorldModelConfig { hidden: 16, members: 2, epochs: 1, batch: 64, ..Default::default() };
        assert_eq!(checkpoints.all_finished(2), Err(vec![0, 1]));
        let second = train_member(1, &train, &validation, &config, &checkpoints, |_, _, _, _| {}, |_| {}).unwrap();
        assert_eq!(checkpoints.all_finished(2), Err(vec![0]));
        let first = train_member(0, &train, &validation, &config, &checkpoints, |_, _, _, _| {}, |_| {}).unwrap();
        assert_eq!(checkpoints.all_finished(2), Ok(vec![first, second]));
    }
}
