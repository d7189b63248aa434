use std::sync::Arc;
use sepsis_core::agent::observation::{render_observation, system_prompt};
use sepsis_core::agent::runtime::system_session;
use sepsis_core::llm::generate::Llm;
use sepsis_core::llm::tokenizer::user_turn;
use sepsis_core::simulation::reference_course;
fn main() {
    let file = std::fs::File::open(".cache/models/SmolLM2-135M-Instruct.Q8_0.gguf").unwrap();
    let llm = Arc::new(Llm::from_gguf(&mut std::io::BufReader::new(file)).unwrap());
    let system = system_session(&llm, &system_prompt(true)).unwrap();
    println!("system tokens {}", system.position());
    let prompt = user_turn(&render_observation(&reference_course(), true));
    let t = std::time::Instant::now();
    for _ in 0..10 { let mut s = system.clone(); s.read(&prompt).unwrap(); }
    println!("prefill {:?}", t.elapsed() / 10);
}
