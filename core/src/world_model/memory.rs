//! The world model's memory of logged transitions: where patients in a
//! state like this one went next when clinicians gave this treatment.
//!
//! Why it exists (docs/world-model.md, "What the measurements say"): the
//! GRU learns where a state drifts but shrinks how a treatment changes that
//! drift (its action effects correlate 0.29 with ICU-Sepsis's within a
//! state, at a fifth of their size), while the logged transitions of a state
//! and treatment, counted, carry the effect that decisions need. So the
//! treatment's first transition from the patient's current state is drawn
//! from the logged ones wherever the training split holds at least
//! `min_count` of them for that state and treatment; elsewhere, and for
//! every later step, the GRU simulates as before.
//!
//! States are the AI Clinician's clusters of the training split (the same
//! clusters the planner's support counts come from, `ai-clinician.json`), so
//! "supported" means the same thing to the planner and to the memory. A
//! drawn state is given the clinical values of a logged step of its cluster
//! (the one nearest the cluster's centre); a drawn end of stay fixes the
//! rollout's survival at 1 (discharged alive) or 0 (died).
//!
//! Each ensemble member reads its own Bayesian bootstrap of the counts
//! (Dirichlet weights, seeded by the member), so members disagree where a
//! state and treatment have few logged transitions and agree where they
//! have many: disagreement keeps measuring how far a question is from the
//! data.
//!
//! The memory also counts how the logged stays that passed through each
//! cluster ended (`outcomes`). The planner values a reached cluster by that
//! share where the cluster holds at least `min_count` logged steps: the
//! GRU's outcome head estimates the same quantity from the features, less
//! closely (docs/world-model.md, "The memory of logged outcomes").
//!
//! And it plans over its own counts (`planned`): the survival from each
//! cluster on when every later decision takes the supported treatment its
//! logged transitions make best. Where a cluster has one, the planner values
//! reaching it by that instead (docs/world-model.md, "Planning over the
//! memory"): a candidate is then judged by what follows it when care goes
//! on as well as the data allow, not as clinicians happened to go on.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::action::N_ACTIONS;
use crate::simulation::uniform_pair;

/// Where a logged transition led.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Still in the ICU, in this cluster.
    Cluster(u32),
    Died,
    Survived,
}

/// A logged step's per-step features as the model reads them: z units in
/// the layout's order (0 where missing) and whether each was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Representative {
    pub z: Vec<f32>,
    pub observed: Vec<bool>,
}

/// The logged transitions of one (cluster, action) with at least
/// `min_count` of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryRow {
    pub cluster: u32,
    pub action: u8,
    /// `(next, count)`, `next` coded as a cluster index, or `clusters` for
    /// death and `clusters + 1` for survival (the AI Clinician's coding).
    pub next: Vec<(u32, u32)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TransitionMemory {
    /// Fewest logged transitions a (cluster, action) needs to be drawn from.
    pub min_count: u32,
    /// Cluster centres in z units of the layout's per-step features (of
    /// `standardiser`'s where it has one, else the model's normaliser's).
    pub centres: Vec<Vec<f32>>,
    /// The support clusters' standardisation where it is not the model's:
    /// they were fitted on a larger training split than the GRU (a grown
    /// cohort, whose first blocks the GRU learnt from). Left out of the JSON
    /// when the model's, as in every card fitted before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardiser: Option<crate::cohort::normaliser::Normaliser>,
    /// One logged step per cluster (nearest its centre).
    pub representatives: Vec<Representative>,
    pub rows: Vec<MemoryRow>,
    /// Per cluster: `(steps of stays that ended alive, logged steps)` in the
    /// training split. Empty in cards fitted before outcomes were counted
    /// (left out of their JSON, so such a card and the decisions recorded
    /// with it keep their identity); those value every reached cluster by the GRU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<(u32, u32)>,
    /// Per cluster: survival from there on when every later decision takes
    /// the best supported treatment by the memory's own transitions
    /// (`fit::planned_survival`); None where no treatment is supported.
    /// Empty in cards fitted before it (left out of their JSON, as `outcomes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<Option<f64>>,
    /// `cluster * 25 + action` -> index in `rows`, built on first use.
    #[serde(skip)]
    index: OnceLock<Vec<Option<u32>>>,
    /// Per member, per row: the bootstrap's probabilities of `next`, built on first use.
    #[serde(skip)]
    weights: OnceLock<Vec<Vec<Vec<f64>>>>,
}

/// Equal when what is stored is equal (the lookups are caches).
impl PartialEq for TransitionMemory {
    fn eq(&self, other: &Self) -> bool {
        (self.min_count, &self.centres, &self.standardiser, &self.representatives, &self.rows, &self.outcomes, &self.planned)
            == (other.min_count, &other.centres, &other.standardiser, &other.representatives, &other.rows, &other.outcomes, &other.planned)
    }
}

/// Seeds the members' bootstrap weights (apart from the simulation's draws).
const BOOTSTRAP_SEED: u32 = 0xB007_0000;

impl TransitionMemory {
    pub fn new(min_count: u32, centres: Vec<Vec<f32>>, representatives: Vec<Representative>, rows: Vec<MemoryRow>) -> Self {
        Self { min_count, centres, standardiser: None, representatives, rows, outcomes: Vec::new(), planned: Vec::new(), index: OnceLock::new(), weights: OnceLock::new() }
    }

    /// The same memory with how the stays through each cluster ended.
    pub fn with_outcomes(self, outcomes: Vec<(u32, u32)>) -> Self {
        assert_eq!(outcomes.len(), self.clusters(), "one outcome count per cluster");
        Self { outcomes, ..self }
    }

    /// The share of logged steps in `cluster` whose stay ended alive, where
    /// the cluster holds at least `min_count` of them: the survival of
    /// patients treated as clinicians treated them from that state on.
    pub fn logged_survival(&self, cluster: usize) -> Option<f64> {
        let &(alive, steps) = self.outcomes.get(cluster)?;
        (steps >= self.min_count).then(|| f64::from(alive) / f64::from(steps))
    }

    /// What reaching `cluster` is worth to the planner: its planned survival
    /// where the memory plans there, else its logged survival.
    pub fn reached_survival(&self, cluster: usize) -> Option<f64> {
        self.planned.get(cluster).copied().flatten().or_else(|| self.logged_survival(cluster))
    }

    pub fn clusters(&self) -> usize {
        self.centres.len()
    }

    /// The cluster of a step's clinical values: nearest centre in the
    /// memory's own units (`normaliser`: the model's, used where the memory
    /// has no standardiser of its own).
    pub fn cluster_of(&self, layout: &super::data::Layout, normaliser: &crate::cohort::normaliser::Normaliser, values: &[Option<f64>]) -> usize {
        self.cluster(&Self::state_z(layout, self.standardiser.as_ref().unwrap_or(normaliser), values))
    }

    /// The cluster nearest a step's per-step features (the centres' z units, 0 where missing).
    pub fn cluster(&self, z: &[f32]) -> usize {
        let distance = |c: &Vec<f32>| c.iter().zip(z).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
        self.centres.iter().enumerate().min_by(|a, b| distance(a.1).total_cmp(&distance(b.1))).map(|(i, _)| i).expect("at least one cluster")
    }

    /// The row of logged transitions for a cluster and action, where there
    /// are at least `min_count`.
    pub fn row(&self, cluster: usize, action: usize) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            let mut index = vec![None; self.clusters() * N_ACTIONS];
            for (i, row) in self.rows.iter().enumerate() {
                index[row.cluster as usize * N_ACTIONS + row.action as usize] = Some(i as u32);
            }
            index
        });
        index.get(cluster * N_ACTIONS + action).copied().flatten().map(|i| i as usize)
    }

    /// A step's values as the memory compares them with its centres: the
    /// layout's per-step z values, in f32 like the centres.
    pub fn state_z(layout: &super::data::Layout, normaliser: &crate::cohort::normaliser::Normaliser, values: &[Option<f64>]) -> Vec<f32> {
        layout.dynamic_z(normaliser, values).into_iter().map(|z| z as f32).collect()
    }

    /// How many logged transitions `row` holds.
    pub fn transitions(&self, row: usize) -> u32 {
        self.rows[row].next.iter().map(|&(_, count)| count).sum()
    }

    pub fn next(&self, row: usize, entry: usize) -> Next {
        let code = self.rows[row].next[entry].0;
        let k = self.clusters() as u32;
        match code {
            c if c < k => Next::Cluster(c),
            c if c == k => Next::Died,
            _ => Next::Survived,
        }
    }

    /// Member `member`'s probability of each of `row`'s next outcomes:
    /// Dirichlet(counts) weights, the same on every machine for the same
    /// memory (a seeded counter-based stream, as the simulation's draws).
    pub fn probabilities(&self, members: usize, member: usize, row: usize) -> &[f64] {
        let weights = self.weights.get_or_init(|| (0..members).map(|m| self.bootstrap(m)).collect());
        assert_eq!(weights.len(), members, "a memory serves one ensemble size");
        &weights[member][row]
    }

    fn bootstrap(&self, member: usize) -> Vec<Vec<f64>> {
        let seed = BOOTSTRAP_SEED ^ member as u32;
        let mut counter = 0u32;
        self.rows
            .iter()
            .map(|row| {
                // Gamma(n, 1) as a sum of n unit exponentials.
                let gamma: Vec<f64> = row
                    .next
                    .iter()
                    .map(|&(_, n)| {
                        (0..n)
                            .map(|_| {
                                counter = counter.wrapping_add(1);
                                -f64::from(uniform_pair(seed, counter).0).ln()
                            })
                            .sum()
                    })
                    .collect();
                let total: f64 = gamma.iter().sum();
                gamma.into_iter().map(|g| g / total).collect()
            })
            .collect()
    }

    /// The entry of `row` that a uniform `u` in [0, 1) picks for `member`.
    pub fn pick(&self, members: usize, member: usize, row: usize, u: f64) -> usize {
        let probabilities = self.probabilities(members, member, row);
        let mut left = u;
        for (entry, p) in probabilities.iter().enumerate() {
            left -= p;
            if left < 0.0 {
                return entry;
            }
        }
        probabilities.len() - 1
    }
}

/// Fitting the memory from a training split (native only).
#[cfg(feature = "eval")]
pub mod fit {
    use std::collections::BTreeMap;

    use super::*;
    use crate::baselines::ai_clinician::AiClinician;
    use crate::cohort::schema::{Kind, FEATURES};
    use crate::env::{TabularMdp, Transition};
    use crate::eval::exact::value_iteration;
    use crate::cohort::{Cohort, Outcome};
    use crate::world_model::card::ModelCard;

    #[derive(Debug, thiserror::Error)]
    pub enum FitError {
        #[error("the world model reads per-step features {model:?}, the support clusters {support:?}")]
        Layout { model: Vec<usize>, support: Vec<usize> },
    }

    /// Count the training split's transitions by (cluster, action) with the
    /// support's clusters, keeping those with at least `min_count`.
    pub fn fit(cohort: &Cohort, support: &AiClinician, card: &ModelCard, min_count: u32) -> Result<TransitionMemory, FitError> {
        let support_dynamic: Vec<usize> = FEATURES.iter().enumerate().filter(|(_, f)| f.kind == Kind::Dynamic).map(|(i, _)| i).collect();
        if support_dynamic != card.layout.dynamic {
            return Err(FitError::Layout { model: card.layout.dynamic.clone(), support: support_dynamic });
        }
        // Support clusters fitted on the model's own split share its
        // normaliser; fitted on a larger one, the memory keeps theirs.
        let same = card.layout.dynamic.iter().all(|&f| {
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            close(support.standardiser.mean[f], card.normaliser.mean[f]) && close(support.standardiser.sd[f], card.normaliser.sd[f])
        });
        let standardiser = (!same).then(|| support.standardiser.clone());
        let k = support.centres.len();
        // Representatives are read by the GRU, so in the model's units; the
        // nearest to a centre is found in the centres' units.
        let z_of = |values: &[Option<f64>]| TransitionMemory::state_z(&card.layout, &card.normaliser, values);
        let support_z = |values: &[Option<f64>]| TransitionMemory::state_z(&card.layout, &support.standardiser, values);
        let centres: Vec<Vec<f32>> = support.centres.iter().map(|c| c.iter().map(|&v| v as f32).collect()).collect();
        // The logged step nearest each centre, and the transitions.
        let mut nearest: Vec<Option<(f32, Representative)>> = vec![None; k];
        let mut counts: Vec<BTreeMap<u32, u32>> = vec![BTreeMap::new(); k * N_ACTIONS];
        let mut outcomes = vec![(0u32, 0u32); k];
        for patient in &cohort.patients {
            let clusters: Vec<usize> = patient.steps.iter().map(|s| support.cluster(&s.values)).collect();
            for (t, (step, &c)) in patient.steps.iter().zip(&clusters).enumerate() {
                outcomes[c].0 += u32::from(patient.outcome == Outcome::Survived);
                outcomes[c].1 += 1;
                let distance: f32 = support_z(&step.values).iter().zip(&centres[c]).map(|(a, b)| (a - b) * (a - b)).sum();
                if nearest[c].as_ref().is_none_or(|(d, _)| distance < *d) {
                    let observed = card.layout.dynamic.iter().map(|&f| step.values[f].is_some()).collect();
                    nearest[c] = Some((distance, Representative { z: z_of(&step.values), observed }));
                }
                let next = match clusters.get(t + 1) {
                    Some(&n) => n as u32,
                    None if patient.outcome == Outcome::Survived => k as u32 + 1,
                    None => k as u32,
                };
                *counts[c * N_ACTIONS + step.action.index()].entry(next).or_default() += 1;
            }
        }
        let representatives = nearest
            .into_iter()
            .zip(&centres)
            .map(|(found, centre)| found.map_or_else(|| Representative { z: centre.clone(), observed: vec![true; centre.len()] }, |(_, r)| r))
            .collect();
        let rows = counts
            .into_iter()
            .enumerate()
            .filter(|(_, next)| next.values().sum::<u32>() >= min_count)
            .map(|(i, next)| MemoryRow { cluster: (i / N_ACTIONS) as u32, action: (i % N_ACTIONS) as u8, next: next.into_iter().collect() })
            .collect();
        let memory = TransitionMemory { standardiser, ..TransitionMemory::new(min_count, centres, representatives, rows).with_outcomes(outcomes) };
        let planned = planned_survival(&memory, support.min_support());
        Ok(TransitionMemory { planned, ..memory })
    }

    /// Survival from each cluster on when every decision from there takes,
    /// among the treatments logged at least `min_support` times in that
    /// cluster (the planner's support), the one the memory's transitions
    /// make best: value iteration over the counted transitions, undiscounted
    /// as ICU-Sepsis scores. A cluster where no treatment is supported is
    /// left to the clinicians: reached, it counts as its logged stays ended
    /// (the planner, too, gives there what clinicians gave most), and it has
    /// no planned survival (None).
    pub fn planned_survival(memory: &TransitionMemory, min_support: u32) -> Vec<Option<f64>> {
        let k = memory.clusters();
        let (died, survived) = (k, k + 1);
        let supported = |row: &MemoryRow| row.next.iter().map(|&(_, n)| n).sum::<u32>() >= min_support;
        let mut transitions = vec![Vec::new(); k * N_ACTIONS];
        let mut planned = vec![false; k];
        for row in memory.rows.iter().filter(|r| supported(r)) {
            let total: f64 = row.next.iter().map(|&(_, n)| f64::from(n)).sum();
            let c = row.cluster as usize;
            planned[c] = true;
            transitions[c * N_ACTIONS + row.action as usize] = row
                .next
                .iter()
                .map(|&(next, n)| Transition { next: next as usize, probability: f64::from(n) / total, reward: if next as usize == survived { 1.0 } else { 0.0 } })
                .collect();
        }
        // Unplanned clusters: one way out, ending as their logged stays did.
        for c in (0..k).filter(|&c| !planned[c]) {
            let (alive, steps) = memory.outcomes.get(c).copied().unwrap_or((0, 0));
            let share = if steps == 0 { 0.0 } else { f64::from(alive) / f64::from(steps) };
            transitions[c * N_ACTIONS] = vec![Transition { next: died, probability: 1.0 - share, reward: 0.0 }, Transition { next: survived, probability: share, reward: 1.0 }];
        }
        let mdp = TabularMdp::new(k, transitions, vec![1.0 / k as f64; k]);
        // Exactly the (cluster, action) pairs given transitions above.
        let optimal = value_iteration(&mdp, |c, a| !mdp.transitions(c, a).is_empty());
        optimal.values.into_iter().zip(planned).map(|(value, planned)| planned.then_some(value)).collect()
    }
}

/// A memory of two clusters for tests: cluster 0 at `now`, cluster 1 at
/// `reached` (each its own logged step), with `rows`.
#[cfg(test)]
pub(crate) fn two_state_memory(card: &super::card::ModelCard, now: &[Option<f64>], reached: &[Option<f64>], rows: Vec<MemoryRow>) -> TransitionMemory {
    let z = |values: &[Option<f64>]| TransitionMemory::state_z(&card.layout, &card.normaliser, values);
    let centres = vec![z(now), z(reached)];
    let representatives = centres.iter().map(|c| Representative { z: c.clone(), observed: vec![true; c.len()] }).collect();
    TransitionMemory::new(20, centres, representatives, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> TransitionMemory {
        let centres = vec![vec![0.0, 0.0], vec![1.0, 1.0]];
        let representatives = centres.iter().map(|c| Representative { z: c.clone(), observed: vec![true, true] }).collect();
        // Cluster 0 with action 0: 30 to cluster 1, 10 died; with action 3: 200 survived, 200 stayed.
        let rows = vec![
            MemoryRow { cluster: 0, action: 0, next: vec![(1, 30), (2, 10)] },
            MemoryRow { cluster: 0, action: 3, next: vec![(0, 200), (3, 200)] },
        ];
        TransitionMemory::new(20, centres, representatives, rows)
    }

    /// The planner's support counts come from the AI Clinician's cluster of
    /// a state and the simulation's memory row from the memory's: the two
    /// must be the same cluster, or a supported candidate would silently
    /// fall back to the GRU.
    #[cfg(feature = "eval")]
    #[test]
    fn the_shipped_memory_finds_the_ai_clinicians_cluster_for_every_demo_step() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let model = crate::world_model::WorldModel::load(std::path::Path::new(&format!("{root}/public/models/world-model"))).unwrap();
        let memory = model.card.memory.as_ref().expect("the shipped model carries its memory");
        let support = crate::eval::policies::load_ai_clinician(std::path::Path::new(&format!("{root}/public/models/ai-clinician.json"))).unwrap();
        let path = format!("{root}/public/demo/icu-sepsis-demo.csv");
        let (cohort, _) = crate::cohort::csv_format::read_cohort("icu-sepsis-demo.csv", std::fs::File::open(&path).unwrap());
        let steps: Vec<&Vec<Option<f64>>> = cohort.patients.iter().flat_map(|p| p.steps.iter().map(|s| &s.values)).collect();
        assert!(steps.len() > 100);
        let differ: Vec<(usize, usize)> = steps
            .iter()
            .map(|values| {
                (memory.cluster_of(&model.card.layout, &model.card.normaliser, values), support.cluster(values))
            })
            .filter(|(a, b)| a != b)
            .collect();
        assert!(differ.is_empty(), "{} of {} steps in another cluster: {differ:?}", differ.len(), steps.len());
    }

    #[test]
    fn rows_are_found_by_cluster_and_action_and_next_is_decoded() {
        let m = memory();
        assert_eq!((m.row(0, 0), m.row(0, 3), m.row(1, 0), m.row(0, 24)), (Some(0), Some(1), None, None));
        assert_eq!((m.next(0, 0), m.next(0, 1), m.next(1, 1)), (Next::Cluster(1), Next::Died, Next::Survived));
        assert_eq!((m.cluster(&[0.2, -0.1]), m.cluster(&[0.9, 0.7])), (0, 1));
    }

    #[test]
    fn members_bootstrap_the_counts_and_spread_less_where_there_are_more() {
        let m = memory();
        let members = 5;
        let share = |row: usize, entry: usize| -> Vec<f64> { (0..members).map(|k| m.probabilities(members, k, row)[entry]).collect() };
        let sd = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        for k in 0..members {
            for row in 0..2 {
                assert!((m.probabilities(members, k, row).iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        let (few, many) = (share(0, 0), share(1, 0));
        assert!(few.windows(2).any(|w| w[0] != w[1]), "members differ: {few:?}");
        // Around 30/40 and 200/400; the bootstrap's SD is about sqrt(p(1-p)/n).
        assert!(few.iter().all(|p| (p - 0.75).abs() < 0.25) && many.iter().all(|p| (p - 0.5).abs() < 0.1), "{few:?} {many:?}");
        assert!(sd(&few) > sd(&many), "40 transitions spread more than 400: {} vs {}", sd(&few), sd(&many));
        // The same memory gives the same weights (a fresh copy draws them again).
        assert_eq!(memory().probabilities(members, 2, 0), m.probabilities(members, 2, 0));
    }

    #[test]
    fn a_uniform_picks_entries_in_proportion() {
        let m = memory();
        let p = m.probabilities(5, 0, 0)[0];
        assert_eq!(m.pick(5, 0, 0, p * 0.99), 0);
        assert_eq!(m.pick(5, 0, 0, p + (1.0 - p) * 0.01), 1);
        assert_eq!(m.pick(5, 0, 0, 0.999_999_999), 1);
    }

    /// Low-MAP patients: fluid takes them to high MAP (30), nothing kills
    /// them (25), a vasopressor takes them to high MAP too, but only 5 times;
    /// high-MAP patients given nothing go home (30).
    #[cfg(feature = "eval")]
    fn cohort() -> crate::cohort::Cohort {
        use crate::action::Action;
        use crate::cohort::schema::{idx, FEATURES};
        use crate::cohort::{Cohort, Outcome, Patient, Step};
        let values = |map: f64| {
            let mut v = vec![Some(1.0); FEATURES.len()];
            v[idx("map")] = Some(map);
            v
        };
        let step = |t: u32, map: f64, action: Action| Step { index: t, values: values(map), action, state: None };
        let (fluid, vaso) = (Action { fluid: 1, vaso: 0 }, Action { fluid: 0, vaso: 2 });
        let mut patients = Vec::new();
        let mut add = |steps: Vec<Step>, outcome| patients.push(Patient { id: format!("p{}", patients.len()), steps, outcome });
        for _ in 0..30 {
            add(vec![step(0, 55.0, fluid), step(1, 85.0, Action::NONE)], Outcome::Survived);
        }
        for _ in 0..25 {
            add(vec![step(0, 55.0, Action::NONE)], Outcome::Died);
        }
        for _ in 0..5 {
            add(vec![step(0, 55.0, vaso), step(1, 85.0, Action::NONE)], Outcome::Survived);
        }
        Cohort { patients }
    }

    #[cfg(feature = "eval")]
    #[test]
    fn fitting_counts_transitions_by_cluster_and_action() {
        use crate::action::Action;
        use crate::baselines::ai_clinician::{AiClinician, Config};
        use crate::cohort::normaliser::Normaliser;
        use crate::cohort::schema::idx;
        use crate::world_model::card::ModelCard;
        use crate::world_model::{Layout, WorldModelConfig};
        let cohort = cohort();
        let support = AiClinician::train(&cohort, Config { clusters: 2, ..Config::default() });
        let card = ModelCard { config: WorldModelConfig::default(), layout: Layout::default(), normaliser: Normaliser::fit(&cohort), training: vec![], memory: None };
        let memory = fit::fit(&cohort, &support, &card, 20).unwrap();
        let map = card.layout.dynamic.iter().position(|&f| f == idx("map")).unwrap();
        let z_of = |map_value: f64| card.normaliser.z(idx("map"), map_value) as f32;
        let low = memory.cluster(&memory.representatives.iter().find(|r| (r.z[map] - z_of(55.0)).abs() < 1e-4).unwrap().z);
        let high = 1 - low;
        let outcomes = |cluster: usize, action: Action| memory.row(cluster, action.index()).map(|r| memory.rows[r].next.clone());
        assert_eq!(outcomes(low, Action { fluid: 1, vaso: 0 }), Some(vec![(high as u32, 30)]));
        assert_eq!(outcomes(low, Action::NONE), Some(vec![(2, 25)]), "death is coded as the cluster count");
        assert_eq!(outcomes(high, Action::NONE), Some(vec![(3, 35)]), "survival as the count + 1");
        assert_eq!(outcomes(low, Action { fluid: 0, vaso: 2 }), None, "5 transitions are fewer than 20");
        assert!((memory.representatives[high].z[map] - z_of(85.0)).abs() < 1e-5);
        // Low MAP: 35 of 60 logged steps in stays that ended alive; high MAP: all 35.
        assert_eq!((memory.outcomes[low], memory.outcomes[high]), ((35, 60), (35, 35)));
        assert_eq!((memory.logged_survival(low), memory.logged_survival(high)), (Some(35.0 / 60.0), Some(1.0)));
        let few = fit::fit(&cohort, &support, &card, 40).unwrap();
        assert_eq!((few.logged_survival(low), few.logged_survival(high)), (Some(35.0 / 60.0), None), "35 steps are fewer than 40");
        assert_eq!(memory.standardiser, None, "fitted on the model's own split");
        // Support clusters fitted on a larger split (another normalisation):
        // the memory keeps theirs and finds their clusters, and its
        // representatives stay in the model's units.
        let mut other = card.clone();
        other.normaliser.mean[idx("map")] += 5.0;
        let apart = fit::fit(&cohort, &support, &other, 20).unwrap();
        assert_eq!(apart.standardiser.as_ref(), Some(&support.standardiser));
        assert_eq!(apart.rows, memory.rows);
        for patient in &cohort.patients {
            let values = &patient.steps[0].values;
            assert_eq!(apart.cluster_of(&other.layout, &other.normaliser, values), support.cluster(values));
        }
        let z_other = other.normaliser.z(idx("map"), 85.0) as f32;
        assert!((apart.representatives[high].z[map] - z_other).abs() < 1e-5);
    }

    /// Planning over the memory: each cluster is worth its best supported
    /// treatment's counted outcomes, followed on; a cluster with no
    /// supported treatment ends as its logged stays did and has no plan.
    #[cfg(feature = "eval")]
    #[test]
    fn planned_survival_follows_the_best_supported_treatment_onward() {
        // Cluster 0: nothing -> cluster 1 (30) or died (10); fluid 3 (action
        // 15) -> survived (25) or died (25). Cluster 1: nothing -> survived
        // (90) or died (10); vasopressor 1 (action 1) -> survived (20).
        // Cluster 2: no rows, 3 of 4 logged steps alive.
        let mut m = memory();
        m.centres.push(vec![2.0, 2.0]);
        m.representatives.push(Representative { z: vec![2.0, 2.0], observed: vec![true, true] });
        let (died, survived) = (3, 4);
        m.rows = vec![
            MemoryRow { cluster: 0, action: 0, next: vec![(1, 30), (died, 10)] },
            MemoryRow { cluster: 0, action: 15, next: vec![(died, 25), (survived, 25)] },
            MemoryRow { cluster: 1, action: 0, next: vec![(died, 10), (survived, 90)] },
            MemoryRow { cluster: 1, action: 1, next: vec![(survived, 20)] },
        ];
        let m = TransitionMemory::new(20, m.centres, m.representatives, m.rows).with_outcomes(vec![(40, 90), (60, 110), (3, 4)]);
        let close = |got: &[Option<f64>], want: [Option<f64>; 3]| {
            got.len() == 3 && got.iter().zip(want).all(|(g, w)| match (g, w) { (Some(g), Some(w)) => (g - w).abs() < 1e-9, (g, w) => *g == w })
        };
        // Support 30: cluster 1 takes nothing (0.9; vasopressor's 20 are too
        // few), so cluster 0's nothing is worth 0.75 * 0.9 against fluid 3's 0.5.
        let got = fit::planned_survival(&m, 30);
        assert!(close(&got, [Some(0.675), Some(0.9), None]), "{got:?}");
        // Support 20: vasopressor 1 in cluster 1 (1.0), so 0.75 in cluster 0.
        let got = fit::planned_survival(&m, 20);
        assert!(close(&got, [Some(0.75), Some(1.0), None]), "{got:?}");
        // Support 45: cluster 0's nothing (40) drops out, fluid 3 (50) stays.
        let got = fit::planned_survival(&m, 45);
        assert!(close(&got, [Some(0.5), Some(0.9), None]), "{got:?}");
        // Reaching a cluster: planned where planned, else the logged share
        // where it holds min_count steps (cluster 2's 4 are too few).
        let m = TransitionMemory { planned: fit::planned_survival(&m, 30), ..m };
        assert_eq!(m.reached_survival(2), None);
        assert!((m.reached_survival(1).unwrap() - 0.9).abs() < 1e-9);
        let unplanned = TransitionMemory { planned: vec![None, None, None], ..m };
        assert_eq!(unplanned.reached_survival(1), Some(60.0 / 110.0));
        // An unplanned cluster reached onward counts as its stays ended.
        let mut onward = unplanned.clone();
        onward.rows[0].next = vec![(2, 30), (died, 10)];
        onward.rows.truncate(1);
        let onward = TransitionMemory::new(20, onward.centres, onward.representatives, onward.rows).with_outcomes(vec![(40, 90), (60, 110), (3, 4)]);
        let got = fit::planned_survival(&onward, 20);
        assert!(close(&got, [Some(0.75 * 0.75), None, None]), "{got:?}");
    }

    #[test]
    fn the_lookups_survive_serialisation() {
        let m = TransitionMemory { planned: vec![Some(0.5), None], ..memory().with_outcomes(vec![(30, 40), (5, 10)]) };
        let back: TransitionMemory = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.row(0, 3), Some(1));
        assert_eq!(back.probabilities(5, 1, 1), m.probabilities(5, 1, 1));
        assert_eq!((back.logged_survival(0), back.logged_survival(1)), (Some(0.75), None), "10 logged steps are fewer than 20");
    }

    /// A card fitted before outcomes were counted reads and writes as it
    /// was: its JSON (and so the identity of decisions made with it) does
    /// not change, and it values no cluster by logged outcomes.
    #[test]
    fn a_memory_without_outcomes_keeps_its_json() {
        let json = serde_json::to_string(&memory()).unwrap();
        assert!(!json.contains("outcomes"), "{json}");
        let back: TransitionMemory = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(back.logged_survival(0), None);
        assert!(!json.contains("planned"), "{json}");
    }
}
