//! The LLM agent as a scoreboard row. ICU-Sepsis is Markov in its state, so
//! the agent decides once per state (from the state's clinical values as a
//! one-step course, as `wm-mpc` does) and the decisions form a policy table.
//!
//! One decision costs seconds on this machine, so every decision is appended
//! to a record file as it is made, keyed by everything that determines it
//! (model, system prompt, observation, decoding); an interrupted evaluation
//! resumes where it stopped and a finished one is read back in moments.
//! A finished table drops the records no current key asks for, so the file
//! holds exactly the decisions behind the row.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::Action;
use crate::agent::decision::{decide, Simulator};
use crate::agent::observation::{render_observation, system_prompt};
use crate::baselines::ai_clinician::AiClinician;
use crate::agent::runtime::{system_session, Decoding, LlmProposer, WorldModelSimulator};
use crate::env::clinical::state_features;
use crate::eval::scoreboard::AgentStats;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::llm::generate::{Llm, Sampling};
use crate::policy::PolicyTable;
use crate::simulation::CourseStep;
use crate::world_model::WorldModel;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CachedDecision {
    key: String,
    state: usize,
    action: usize,
    fallback: bool,
    malformed: usize,
    tool_calls: usize,
    simulate_calls: usize,
    seconds: f64,
}

/// Decisions already made, read from and appended to a JSONL file.
struct DecisionCache {
    path: PathBuf,
    known: HashMap<String, CachedDecision>,
}

impl DecisionCache {
    fn open(path: &Path) -> std::io::Result<Self> {
        let mut known = HashMap::new();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        for (n, line) in text.lines().enumerate() {
            // A line cut short by an interruption is simply decided again.
            match serde_json::from_str::<CachedDecision>(line) {
                Ok(d) => {
                    known.insert(d.key.clone(), d);
                }
                Err(e) => eprintln!("{}:{}: skipped ({e})", path.display(), n + 1),
            }
        }
        if !text.is_empty() && !text.ends_with('\n') {
            // Start the next record on a line of its own.
            std::fs::OpenOptions::new().append(true).open(path)?.write_all(b"\n")?;
        }
        Ok(Self { path: path.to_path_buf(), known })
    }

    fn record(&mut self, decision: CachedDecision) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(file, "{}", serde_json::to_string(&decision).map_err(std::io::Error::other)?)?;
        self.known.insert(decision.key.clone(), decision);
        Ok(())
    }

    /// Keep only `current` (in its order) when the file holds anything
    /// else: the records of an older model or prompt, which no key of this
    /// table can reach again. Written beside the file and renamed, so an
    /// interruption loses nothing.
    fn keep_only(&mut self, current: &[CachedDecision]) -> std::io::Result<()> {
        if self.known.len() == current.len() && current.iter().all(|d| self.known.contains_key(&d.key)) {
            return Ok(());
        }
        let partial = self.path.with_extension("jsonl.part");
        let mut text = String::new();
        for decision in current {
            text.push_str(&serde_json::to_string(decision).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &self.path)?;
        self.known = current.iter().map(|d| (d.key.clone(), d.clone())).collect();
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentEvalError {
    #[error("{0}")]
    Agent(#[from] crate::agent::decision::AgentError),
    #[error("decision cache: {0}")]
    Cache(#[from] std::io::Error),
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
}

/// The agent's policy table over every patient state, and its behaviour.
/// `model_identity` names the LLM (and adapters) so a changed model never
/// reuses another's decisions; `world_model`: the simulate tool, if offered;
/// `practice`: the clinicians' logged practice, for an adapter whose
/// observation format shows it (None: the course alone).
pub fn llm_policy_table(
    env: &IcuSepsis,
    llm: &Arc<Llm>,
    model_identity: &str,
    world_model: Option<&WorldModel>,
    practice: Option<&AiClinician>,
    decoding: Decoding,
    cache_path: &Path,
) -> Result<(PolicyTable, AgentStats), AgentEvalError> {
    let can_simulate = world_model.is_some();
    let prompt = system_prompt(can_simulate, practice.map(|support| support.min_support()));
    let system = system_session(llm, &prompt)?;
    let mut cache = DecisionCache::open(cache_path)?;
    let (mut actions, mut made) = (Vec::with_capacity(N_PATIENT_STATES), Vec::new());
    let mut decided: Vec<CachedDecision> = Vec::with_capacity(N_PATIENT_STATES);
    let started = Instant::now();
    let decoding_key = serde_json::to_string(&decoding.as_used(can_simulate, practice.is_some())).expect("plain data");
    for state in 0..N_PATIENT_STATES {
        let course = vec![CourseStep { values: state_features(env, state), action: Action::NONE }];
        let logged = practice.map(|support| support.practice(&course[0].values));
        let observation = render_observation(&course, can_simulate, logged.as_ref());
        let key = decision_key(&[model_identity, &prompt, &observation, &decoding_key]);
        let decision = match cache.known.get(&key) {
            Some(d) => d.clone(),
            None => {
                let clock = Instant::now();
                let mut proposer = LlmProposer::new(system.clone(), Sampling::GREEDY, decoding);
                let mut simulator = world_model.map(|model| WorldModelSimulator { model, samples: 16, seed: state as u32 });
                let tool = simulator.as_mut().map(|s| s as &mut dyn Simulator);
                let trace = decide(&mut proposer, tool, &course, logged.as_ref(), &mut |_| {})?;
                let simulate_calls = trace.events.iter().filter(|e| matches!(e, crate::agent::decision::TraceEvent::Simulated { .. })).count();
                let d = CachedDecision {
                    key,
                    state,
                    action: trace.prescription.index(),
                    fallback: trace.fallback.is_some(),
                    malformed: trace.malformed,
                    tool_calls: trace.tool_calls,
                    simulate_calls,
                    seconds: clock.elapsed().as_secs_f64(),
                };
                cache.record(d.clone())?;
                made.push(d.seconds);
                if made.len() % 25 == 0 {
                    let per = started.elapsed().as_secs_f64() / made.len() as f64;
                    eprintln!("  state {}/{N_PATIENT_STATES}: {per:.1} s per decision, about {:.0} min left", state + 1, per * (N_PATIENT_STATES - state - 1) as f64 / 60.0);
                }
                d
            }
        };
        actions.push(decision.action);
        decided.push(decision);
    }
    cache.keep_only(&decided)?;
    let n = decided.len() as f64;
    let mean = |f: &dyn Fn(&CachedDecision) -> f64| decided.iter().map(f).sum::<f64>() / n;
    let stats = AgentStats {
        decisions: decided.len(),
        valid_protocol_rate: mean(&|d| (!d.fallback && d.malformed == 0) as u8 as f64),
        tool_calls_per_decision: mean(&|d| d.tool_calls as f64),
        simulate_calls_per_decision: mean(&|d| d.simulate_calls as f64),
        fallback_rate: mean(&|d| d.fallback as u8 as f64),
        seconds_per_decision: (!made.is_empty()).then(|| made.iter().sum::<f64>() / made.len() as f64),
    };
    Ok((PolicyTable::deterministic(&actions)?, stats))
}

fn decision_key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record that differs from another only by its key and state.
    fn decision(key: &str, state: usize) -> CachedDecision {
        CachedDecision { key: key.into(), state, action: 3, fallback: false, malformed: 0, tool_calls: 2, simulate_calls: 1, seconds: 1.5 }
    }

    #[test]
    fn the_cache_survives_a_cut_line_and_keys_depend_on_every_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let mut cache = DecisionCache::open(&path).unwrap();
        cache.record(decision("a", 0)).unwrap();
        cache.record(decision("b", 1)).unwrap();
        // An interruption mid-write leaves half a line.
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(file, "{{\"key\":\"c\",\"sta").unwrap();
        let mut reopened = DecisionCache::open(&path).unwrap();
        assert_eq!(reopened.known.len(), 2);
        assert_eq!(reopened.known["b"], decision("b", 1));
        reopened.record(decision("c", 2)).unwrap();
        assert_eq!(DecisionCache::open(&path).unwrap().known.len(), 3, "the next record is not glued to the cut line");
        assert_ne!(decision_key(&["m", "p", "o"]), decision_key(&["m", "p", "o2"]));
        assert_ne!(decision_key(&["ab", "c"]), decision_key(&["a", "bc"]), "parts are delimited");
    }

    #[test]
    fn a_finished_table_keeps_exactly_its_own_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let mut cache = DecisionCache::open(&path).unwrap();
        for (key, state) in [("old-0", 0), ("new-1", 1), ("old-1", 1), ("new-0", 0)] {
            cache.record(decision(key, state)).unwrap();
        }
        let current = [decision("new-0", 0), decision("new-1", 1)];
        cache.keep_only(&current).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<String> = text.lines().map(|l| serde_json::from_str::<CachedDecision>(l).unwrap().key).collect();
        assert_eq!(keys, ["new-0", "new-1"], "stale records dropped, the rest in state order");
        assert_eq!(DecisionCache::open(&path).unwrap().known.len(), 2);
        assert!(!path.with_extension("jsonl.part").exists());
        // Nothing stale: the file is left as it is.
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        cache.keep_only(&current).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), before);
    }

    /// Records are keyed by the decoding as used: a rule that cannot act on
    /// a row (support without the clinicians' practice, proposals without
    /// a simulator) leaves the row's keys, so its records, as they were.
    #[test]
    fn decoding_rules_that_cannot_act_on_a_row_leave_its_keys() {
        let key = |d: Decoding| serde_json::to_string(&d).unwrap();
        let plain = Decoding::Constrained { thought_tokens: 16, max_simulate_calls: 1, faithful: true, full_proposals: false, supported_proposals: false, prescribes_best: false };
        let both = Decoding::Constrained { thought_tokens: 16, max_simulate_calls: 1, faithful: true, full_proposals: true, supported_proposals: true, prescribes_best: true };
        assert_eq!(key(both.as_used(false, true)), key(plain), "no simulator");
        let unfaithful = |d: Decoding| match d {
            Decoding::Constrained { faithful: _, thought_tokens, max_simulate_calls, full_proposals, supported_proposals, prescribes_best } => Decoding::Constrained { thought_tokens, max_simulate_calls, faithful: false, full_proposals, supported_proposals, prescribes_best },
            free => free,
        };
        assert!(!key(unfaithful(both).as_used(true, true)).contains("prescribes_best"), "the prescribed best is faithful decoding's");
        assert!(key(both.as_used(true, true)).contains(r#""prescribes_best":true"#), "the prescribed best acts with a simulator");
        assert_eq!(key(plain), r#"{"mode":"constrained","thought_tokens":16,"max_simulate_calls":1,"faithful":true}"#, "the keys recorded before the rules");
        assert_ne!(key(both.as_used(true, false)), key(plain), "three candidates act with a simulator");
        assert_ne!(key(both.as_used(true, false)), key(both.as_used(true, true)), "support acts where practice is shown");
        assert_eq!(key(both.as_used(true, true)), key(both));
    }
}
