//! Faithful decoding on the real model files (needs `make fetch`): the
//! shipped agent's first thought names the patient's state as the values
//! are, its refine thought the survival of the best candidate shown (the
//! teacher's ranking), and its prescription is that candidate, having
//! simulated only candidates in the clinicians' practice.

use std::path::Path;
use std::sync::Arc;

use sepsis_core::agent::decision::{decide, Shown, Trace, TraceEvent};
use sepsis_core::agent::observation::{situation_words, system_prompt};
use sepsis_core::agent::runtime::{best_shown, system_session, Decoding, LlmProposer, WorldModelSimulator};
use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::eval::policies::{load_adapter, load_ai_clinician, AGENT_ADAPTER, AI_CLINICIAN_MODEL};
use sepsis_core::guideline::Situation;
use sepsis_core::llm::generate::{Llm, Sampling};
use sepsis_core::simulation::CourseStep;
use sepsis_core::world_model::WorldModel;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The demo patient's course up to `step`.
fn course(patient: &str, step: usize) -> Vec<CourseStep> {
    let path = format!("{ROOT}/public/demo/icu-sepsis-demo.csv");
    let (cohort, _) = read_cohort("demo", std::fs::File::open(&path).unwrap());
    let found = cohort.patients.iter().find(|p| p.id == patient).expect("a demo patient");
    found.steps[..=step].iter().map(|s| CourseStep { values: s.values.clone(), action: s.action }).collect()
}

fn turns(trace: &Trace) -> Vec<&str> {
    trace.events.iter().filter_map(|e| if let TraceEvent::Turn { text } = e { Some(text.as_str()) } else { None }).collect()
}

#[test]
fn the_agent_states_the_patients_state_as_it_is_and_prescribes_what_its_thought_names() {
    let file = std::fs::File::open(format!("{ROOT}/.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf")).expect("the Q8_0 model (make fetch)");
    let base = Llm::from_gguf(&mut std::io::BufReader::new(file)).unwrap();
    let (adapter, _) = load_adapter(format!("{ROOT}/{AGENT_ADAPTER}"), "rl").unwrap();
    let format = adapter.observation;
    let llm = Arc::new(base.with_adapter(&adapter).unwrap());

    // The forced words end where the teacher's thought goes on, so the model
    // continues a tokenization it was trained on.
    let tokenizer = &llm.tokenizer;
    // Each: the words written for the model, and how the teacher goes on.
    for (words, goes_on) in [("MAP low, lactate high:", " compare."), ("MAP at target, lactate normal:", " compare."), ("Best: survival 84%,", " flags none.")] {
        let stated = tokenizer.encode(words);
        let whole = tokenizer.encode(&format!("{words}{goes_on}"));
        assert_eq!(&whole[..stated.len()], stated.as_slice(), "{words}");
    }

    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let support = load_ai_clinician(Path::new(&format!("{ROOT}/{AI_CLINICIAN_MODEL}"))).unwrap();
    let system = system_session(&llm, &system_prompt(true, format.practice_threshold(support.min_support()))).unwrap();
    // MAP 61 and lactate 2.2 (the agent wrote "MAP at target, lactate
    // normal" here without faithful decoding); lactate 2.8 at MAP 74; and a
    // patient its thought names a survival for among three candidates.
    for (patient, step, situation) in [("icu-2026-000139", 1, "MAP low, lactate high"), ("icu-2026-000002", 0, "MAP at target, lactate high"), ("icu-2026-000035", 0, "MAP at target, lactate normal")] {
        let course = course(patient, step);
        assert_eq!(situation_words(&Situation::of_course(&course)), situation);
        let logged = support.practice(&course[course.len() - 1].values);
        let mut proposer = LlmProposer::new(system.clone(), Sampling::GREEDY, Decoding::DEFAULT);
        let mut simulator = WorldModelSimulator { model: &model, samples: 16, seed: 1 };
        let trace = decide(&mut proposer, Some(&mut simulator), &course, Some(&logged), &mut |_| {}).unwrap();
        let turns = turns(&trace);
        assert!(trace.fallback.is_none() && turns.len() == 2, "{trace:?}");
        assert!(turns[0].starts_with(&format!("{situation}:")), "{patient}: {}", turns[0]);
        // What the agent was shown: each simulated candidate's figures and flags.
        let shown: Vec<Shown> = trace
            .events
            .iter()
            .filter_map(|e| if let TraceEvent::Simulated { candidates, flags } = e { Some(candidates.iter().zip(flags).map(|(c, f)| Shown::of(c, f))) } else { None })
            .flatten()
            .collect();
        // Supported proposals: only what clinicians gave often enough in
        // states like this one to be in support is simulated.
        assert!(shown.iter().all(|s| logged.supported(s.action)), "{patient}: simulated an unsupported candidate: {shown:?}, logged {logged:?}");
        assert!(shown.iter().any(|s| s.action == trace.prescription), "{patient}: prescribed {} without simulating it: {trace:?}", trace.prescription);
        // Prescribed best: the refine thought begins with the survival of
        // the best candidate shown (the teacher's ranking), and the
        // prescription is that candidate.
        let best = best_shown(&shown).unwrap();
        assert!(turns[1].starts_with(&format!("Best: survival {}%,", best.percent())), "{patient}: {}", turns[1]);
        assert_eq!(trace.prescription, best.action, "{patient}: {shown:?}");
    }
}
