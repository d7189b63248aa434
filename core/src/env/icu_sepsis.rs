//! The ICU-Sepsis MDP (Choudhary, Gupta, Thomas, RLC 2024; MIT licence),
//! loaded from the `dynamics.npz` and `admissible_actions.txt` that ship in
//! the `icu-sepsis` 2.0.1 wheel (fetched to `.cache/icu-sepsis/` at set-up).
//!
//! States 0-712 are patient states, 713 death, 714 survival, 715 absorbing.
//! Reward is +1 on reaching survival, gamma = 1, so a policy's value is its
//! survival probability.

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3};
use ndarray_npy::NpzReader;
use rand::Rng;

use super::{TabularMdp, Transition};
use crate::action::N_ACTIONS;

pub const N_STATES: usize = 716;
pub const N_PATIENT_STATES: usize = 713;
pub const STATE_DEATH: usize = 713;
pub const STATE_SURVIVAL: usize = 714;
pub const N_CENTROID_COLUMNS: usize = 47;
/// Default location of the fetched files, relative to the repository root.
pub const DEFAULT_DIR: &str = ".cache/icu-sepsis";
/// Probabilities in a row must sum to 1 within this.
const SUM_TOLERANCE: f64 = 1e-6;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message} (run `make fetch` to download and verify the ICU-Sepsis files)")]
    File { path: PathBuf, message: String },
    #[error("{path}: array {array:?} has shape {found:?}, expected {expected:?}")]
    Shape { path: PathBuf, array: &'static str, found: Vec<usize>, expected: Vec<usize> },
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
}

pub struct IcuSepsis {
    /// The dynamics over the 713 patient states (death, survival and the
    /// absorbing state are terminal).
    pub mdp: TabularMdp,
    /// The clinicians' (expert) policy, `N_STATES x 25`.
    pub expert_policy: Vec<[f64; N_ACTIONS]>,
    /// z-scored feature centroids of each state, `N_STATES x 47`.
    pub centroids: Vec<[f64; N_CENTROID_COLUMNS]>,
    pub sofa: Vec<f64>,
    /// Actions clinicians took often enough in each state.
    admissible: Vec<Vec<usize>>,
}

impl IcuSepsis {
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let npz_path = dir.join("dynamics.npz");
        let file = File::open(&npz_path).map_err(|e| LoadError::File { path: npz_path.clone(), message: e.to_string() })?;
        let mut npz = NpzReader::new(file).map_err(|e| LoadError::File { path: npz_path.clone(), message: e.to_string() })?;
        let mut read = |name: &'static str| -> Result<ndarray::ArrayD<f64>, LoadError> {
            npz.by_name(&format!("{name}.npy"))
                .map_err(|e| LoadError::File { path: npz_path.clone(), message: format!("array {name:?}: {e}") })
        };
        let tx = read("tx_mat")?;
        let r = read("r_mat")?;
        let d0 = read("d_0")?;
        let expert = read("expert_policy")?;
        let centers = read("state_cluster_centers")?;
        let sofa = read("sofa_scores")?;
        let shape = |array: &'static str, a: &ndarray::ArrayD<f64>, expected: &[usize]| {
            if a.shape() == expected {
                Ok(())
            } else {
                Err(LoadError::Shape { path: npz_path.clone(), array, found: a.shape().to_vec(), expected: expected.to_vec() })
            }
        };
        shape("tx_mat", &tx, &[N_STATES, N_ACTIONS, N_STATES])?;
        shape("r_mat", &r, &[N_STATES, N_ACTIONS, N_STATES])?;
        shape("d_0", &d0, &[N_STATES])?;
        shape("expert_policy", &expert, &[N_STATES, N_ACTIONS])?;
        shape("state_cluster_centers", &centers, &[N_STATES, N_CENTROID_COLUMNS])?;
        shape("sofa_scores", &sofa, &[N_STATES])?;
        let tx: Array3<f64> = tx.into_dimensionality().expect("shape checked");
        let r: Array3<f64> = r.into_dimensionality().expect("shape checked");
        let expert: Array2<f64> = expert.into_dimensionality().expect("shape checked");
        let centers: Array2<f64> = centers.into_dimensionality().expect("shape checked");
        let d0: Array1<f64> = d0.into_dimensionality().expect("shape checked");
        let sofa: Array1<f64> = sofa.into_dimensionality().expect("shape checked");

        let content = |message: String| LoadError::Content { path: npz_path.clone(), message };
        let mut transitions = Vec::with_capacity(N_STATES * N_ACTIONS);
        for s in 0..N_PATIENT_STATES {
            for a in 0..N_ACTIONS {
                let row: Vec<Transition> = (0..N_STATES)
                    .filter(|&n| tx[[s, a, n]] > 0.0)
                    .map(|n| Transition { next: n, probability: tx[[s, a, n]], reward: r[[s, a, n]] })
                    .collect();
                let sum: f64 = row.iter().map(|t| t.probability).sum();
                if (sum - 1.0).abs() > SUM_TOLERANCE {
                    return Err(content(format!("tx_mat[{s}, {a}, :] sums to {sum}, expected 1")));
                }
                transitions.push(row);
            }
        }
        let initial = d0.to_vec();
        if (initial.iter().sum::<f64>() - 1.0).abs() > SUM_TOLERANCE || initial[N_PATIENT_STATES..].iter().any(|&p| p != 0.0) {
            return Err(content("d_0 must be a distribution over patient states 0..=712".into()));
        }
        let mdp = TabularMdp::new(N_PATIENT_STATES, transitions, initial[..N_PATIENT_STATES].to_vec());
        let expert_policy = (0..N_STATES).map(|s| std::array::from_fn(|a| expert[[s, a]])).collect();
        let centroids = (0..N_STATES).map(|s| std::array::from_fn(|c| centers[[s, c]])).collect();
        let admissible = read_admissible(&dir.join("admissible_actions.txt"))?;
        Ok(Self { mdp, expert_policy, centroids, sofa: sofa.to_vec(), admissible })
    }

    pub fn admissible(&self, state: usize) -> &[usize] {
        &self.admissible[state]
    }

    pub fn is_admissible(&self, state: usize, action: usize) -> bool {
        self.admissible[state].contains(&action)
    }

    pub fn is_terminal(state: usize) -> bool {
        state >= N_PATIENT_STATES
    }

    /// Draw a start state from the initial distribution.
    pub fn sample_initial<R: Rng>(&self, rng: &mut R) -> usize {
        sample_index(self.mdp.initial.iter().copied(), rng)
    }

    /// Draw the next state and its reward.
    pub fn step<R: Rng>(&self, state: usize, action: usize, rng: &mut R) -> Transition {
        let row = self.mdp.transitions(state, action);
        row[sample_index(row.iter().map(|t| t.probability), rng)]
    }
}

/// Inverse-CDF draw of an index with the given probabilities; the last
/// possible index absorbs rounding so a draw always lands.
pub fn sample_index<R: Rng>(probabilities: impl Iterator<Item = f64>, rng: &mut R) -> usize {
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    let mut last = 0;
    for (i, p) in probabilities.enumerate() {
        if p <= 0.0 {
            continue;
        }
        cumulative += p;
        last = i;
        if u < cumulative {
            return i;
        }
    }
    last
}

/// `admissible_actions.txt`: first line the count per state, then one line of
/// action indices per state.
fn read_admissible(path: &Path) -> Result<Vec<Vec<usize>>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::File { path: path.into(), message: e.to_string() })?;
    let content = |line: usize, message: String| LoadError::Content { path: path.into(), message: format!("line {line}: {message}") };
    let parse_line = |number: usize, line: &str| -> Result<Vec<usize>, LoadError> {
        line.split_whitespace()
            .map(|item| item.parse::<usize>().map_err(|_| content(number, format!("{item:?} is not a non-negative integer"))))
            .collect()
    };
    let mut lines = text.lines();
    let counts = parse_line(1, lines.next().unwrap_or(""))?;
    if counts.len() != N_STATES {
        return Err(content(1, format!("{} counts, expected {N_STATES}", counts.len())));
    }
    counts
        .iter()
        .enumerate()
        .map(|(state, &count)| {
            let number = state + 2;
            let actions = parse_line(number, lines.next().unwrap_or(""))?;
            if actions.len() != count || actions.iter().any(|&a| a >= N_ACTIONS) {
                return Err(content(number, format!("state {state}: expected {count} action indices in 0..25, found {actions:?}")));
            }
            Ok(actions)
        })
        .collect()
}
