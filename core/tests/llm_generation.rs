//! The agent's LLM runs and writes sense (needs `make fetch`: the Q8_0 GGUF).

use sepsis_core::llm::generate::{Flow, Llm, Sampling, StopReason};
use sepsis_core::llm::tokenizer::chat_prompt;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf");
const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";

fn llm() -> Llm {
    let mut file = std::io::BufReader::new(std::fs::File::open(MODEL).expect("the Q8_0 model (run `make fetch`)"));
    Llm::from_gguf(&mut file).unwrap()
}

fn answer(llm: &Llm, question: &str, max_tokens: usize) -> String {
    let mut session = llm.session();
    session.read(&chat_prompt(SYSTEM, question)).unwrap();
    session.generate(Sampling::GREEDY, max_tokens, &[], |_| Flow::Continue).unwrap().text
}

/// The base model is small and makes things up (it puts water's freezing
/// point at -18 °C): it is a base for narrow fine-tuned behaviour, so this
/// checks plain, common answers only.
#[test]
fn greedy_answers_are_coherent() {
    let llm = llm();
    for (question, expected) in [
        ("What is the capital of France?", "Paris"),
        ("Which organ pumps blood?", "heart"),
        ("What color is the sky on a clear day?", "blue"),
        ("What do bees make?", "honey"),
    ] {
        let text = answer(&llm, question, 40);
        assert!(text.to_lowercase().contains(&expected.to_lowercase()), "{question} -> {text:?}");
    }
}

#[test]
fn a_cached_system_prompt_gives_the_same_answer_as_reading_it_all() {
    let llm = llm();
    let prompt = chat_prompt(SYSTEM, "Name a primary colour.");
    let (head, tail) = prompt.split_at(prompt.find("<|im_start|>user").unwrap());
    let mut cached = llm.session();
    cached.read(head).unwrap();
    let mut reused = cached.clone();
    reused.read(tail).unwrap();
    let from_cache = reused.generate(Sampling::GREEDY, 20, &[], |_| Flow::Continue).unwrap();
    let mut whole = llm.session();
    whole.read(&prompt).unwrap();
    assert_eq!(whole.generate(Sampling::GREEDY, 20, &[], |_| Flow::Continue).unwrap().tokens, from_cache.tokens);
    // The cached session itself is untouched by the reuse.
    assert_eq!(cached.position(), llm.tokenizer.encode(head).len());
}

#[test]
fn budgets_stop_sequences_cancellation_and_seeds_are_honoured() {
    let llm = llm();
    let mut session = llm.session();
    session.read(&chat_prompt(SYSTEM, "Count from one to twenty in words, separated by commas.")).unwrap();
    let start = session.clone();

    let budget = start.clone().generate(Sampling::GREEDY, 5, &[], |_| Flow::Continue).unwrap();
    assert_eq!((budget.tokens.len(), budget.stop), (5, StopReason::Budget));

    let stopped = start.clone().generate(Sampling::GREEDY, 60, &[","], |_| Flow::Continue).unwrap();
    assert_eq!(stopped.stop, StopReason::StopSequence(",".into()));
    assert!(stopped.text.ends_with(','), "{:?}", stopped.text);

    let mut seen = 0;
    let cancelled = start.clone().generate(Sampling::GREEDY, 60, &[], |_| {
        seen += 1;
        if seen == 3 { Flow::Stop } else { Flow::Continue }
    });
    assert_eq!(cancelled.unwrap().stop, StopReason::Cancelled);

    let warm = Sampling { temperature: 1.0, top_p: 0.9, seed: 7 };
    let a = start.clone().generate(warm, 30, &[], |_| Flow::Continue).unwrap();
    assert_eq!(a, start.clone().generate(warm, 30, &[], |_| Flow::Continue).unwrap(), "same seed, same text");
    let others: Vec<_> = (8..12).map(|seed| start.clone().generate(Sampling { seed, ..warm }, 30, &[], |_| Flow::Continue).unwrap().tokens).collect();
    assert!(others.iter().any(|t| *t != a.tokens), "other seeds sample other text");
}
