//! The agent's LLM on the CPU (`make bench` runs it with 1 and 2 threads and
//! writes docs/benchmarks.md): reading the reference patient's decision
//! prompt after the cached system prompt (prefill), writing 32 tokens
//! (decode), and one whole decision of `llm-zero-shot-wm` with the world
//! model (prompt to prescription). The browser counterparts are the worker's
//! `MeasureLlm` and `Recommend` requests, timed by `tests/bench/browser.mjs`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sepsis_core::agent::decision::decide;
use sepsis_core::agent::observation::{render_observation, system_prompt, ObservationFormat};
use sepsis_core::agent::runtime::{system_session, Decoding, LlmProposer, WorldModelSimulator};
use sepsis_core::llm::generate::{Generator, Llm, Sampling};
use sepsis_core::llm::tokenizer::user_turn;
use sepsis_core::simulation::reference_course;
use sepsis_core::world_model::WorldModel;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
pub const DECODE_TOKENS: usize = 32;

fn llm(c: &mut Criterion) {
    let file = std::fs::File::open(format!("{ROOT}/.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf")).expect("the Q8_0 model (make fetch)");
    let llm = Arc::new(Llm::from_gguf(&mut std::io::BufReader::new(file)).expect("GGUF"));
    let world_model = WorldModel::load(std::path::Path::new(&format!("{ROOT}/public/models/world-model"))).expect("the shipped world model");
    let threads = candle_core::utils::get_num_threads();
    let system = system_session(&llm, &system_prompt(true, None)).unwrap();
    let course = reference_course();
    let prompt = user_turn(&render_observation(&course, true, None));
    let prompt_tokens = llm.tokenizer.encode(&prompt).len();

    let mut group = c.benchmark_group("llm");
    group.sample_size(10);
    group.throughput(Throughput::Elements(prompt_tokens as u64));
    group.bench_function(format!("prefill/{prompt_tokens}-tokens/{threads}-threads"), |b| {
        b.iter(|| system.clone().read(&prompt).unwrap())
    });
    let mut after_prompt = system.clone();
    after_prompt.read(&prompt).unwrap();
    group.throughput(Throughput::Elements(DECODE_TOKENS as u64));
    group.bench_function(format!("decode/{DECODE_TOKENS}-tokens/{threads}-threads"), |b| {
        b.iter(|| {
            let mut session = after_prompt.clone();
            let mut generator = Generator::new(Sampling::GREEDY, DECODE_TOKENS, &[]).ignoring_end_of_turn();
            while session.next_token(&mut generator).unwrap().is_some() {}
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("decision/llm-zero-shot-wm/{threads}-threads"), |b| {
        b.iter(|| {
            let mut proposer = LlmProposer::new(system.clone(), Sampling::GREEDY, Decoding::DEFAULT);
            let mut simulator = WorldModelSimulator { model: &world_model, samples: 16, seed: 1 };
            decide(&mut proposer, Some(&mut simulator), &course, None, &mut |_| {}).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, llm);
criterion_main!(benches);
