//! Our llama forward pass (embedding, RMS norms, rope, grouped attention
//! with its cache, tied output head) against candle-transformers' quantized
//! llama on the same GGUF (needs `make fetch`). Both run with the weights
//! dequantized to f32: the Q8_0 products are another kernel in each (ours is
//! checked against exact arithmetic in `llm::q8_matmul`, and against this
//! dense model in `llm_generation.rs`), so what is compared here is the
//! model around them. A test binary of its own because candle reads
//! `CANDLE_DEQUANTIZE_ALL` from the environment.

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use sepsis_core::llm::generate::Llm;
use sepsis_core::llm::model::{max_abs_diff, KvCache};
use sepsis_core::llm::tokenizer::chat_prompt;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf");

#[test]
fn our_forward_matches_candle_transformers_llama_on_the_same_weights() {
    // Before any model or thread of candle's exists; the only test here.
    std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    let open = || std::io::BufReader::new(std::fs::File::open(MODEL).expect("the Q8_0 model (run `make fetch`)"));
    let llm = Llm::from_gguf(&mut open()).unwrap();
    let ours = llm.model.for_training().unwrap();
    let mut file = open();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut reference = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();

    let prompt = llm.tokenizer.encode(&chat_prompt("You are a helpful assistant. Answer briefly.", "MAP 58 mmHg, lactate 4.1: what next?"));
    let mut cache = KvCache::default();
    let logits = ours.forward(&prompt, &mut cache).unwrap();
    let theirs = reference.forward(&Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap(), 0).unwrap().squeeze(0).unwrap();
    let diff = max_abs_diff(&logits, &theirs).unwrap();
    assert!(diff < 1e-3, "prefill logits differ by {diff}");
    let mut position = prompt.len();
    for token in [28u32, 1217, 30] {
        let logits = ours.forward(&[token], &mut cache).unwrap();
        let theirs = reference.forward(&Tensor::new(&[token], &Device::Cpu).unwrap().unsqueeze(0).unwrap(), position).unwrap().squeeze(0).unwrap();
        let diff = max_abs_diff(&logits, &theirs).unwrap();
        assert!(diff < 1e-3, "decode logits differ by {diff} at position {position}");
        position += 1;
    }
    assert_eq!(cache.len(), position);
}
