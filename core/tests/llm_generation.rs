//! The agent's LLM runs and writes sense (needs `make fetch`: the Q8_0 GGUF).

use sepsis_core::llm::generate::{Choice, Flow, Generator, Llm, Sampling, StopReason};
use sepsis_core::llm::tokenizer::chat_prompt;
use std::sync::Arc;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf");
const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";

fn load() -> Llm {
    let mut file = std::io::BufReader::new(std::fs::File::open(MODEL).expect("the Q8_0 model (run `make fetch`)"));
    Llm::from_gguf(&mut file).unwrap()
}

fn llm() -> Arc<Llm> {
    Arc::new(load())
}

fn answer(llm: &Arc<Llm>, question: &str, max_tokens: usize) -> String {
    let mut session = llm.session();
    session.read(&chat_prompt(SYSTEM, question)).unwrap();
    session.generate(Sampling::GREEDY, max_tokens, &[], |_| Flow::Continue).unwrap().text
}

/// The base model is small and makes things up (it puts water's freezing
/// point at -18 °C, and calls Saturn the largest planet): it is a base for
/// narrow fine-tuned behaviour, so this checks plain, common answers only.
/// Its answers are fragile: "Which organ pumps blood?" got "heart" from
/// candle's Q8_0 kernel and from the dense weights, but not from ours.
#[test]
fn greedy_answers_are_coherent() {
    let llm = llm();
    for (question, expected) in [
        ("What is the capital of France?", "Paris"),
        ("How many legs does a spider have?", "eight"),
        ("What is frozen water called?", "ice"),
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
    session.read(&chat_prompt(SYSTEM, "Name three colours, separated by commas.")).unwrap();
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

/// A freshly initialised adapter (B = 0) changes nothing; once B is not zero
/// the logits move; a saved adapter loads back the same; malformed adapters
/// are refused with the offending tensor named.
#[test]
fn lora_adapters_apply_on_top_of_the_quantized_base() {
    use candle_core::Tensor;
    use sepsis_core::llm::model::{max_abs_diff, KvCache, LoraAdapter};
    let mut llm = load();
    let prompt = llm.tokenizer.encode(&chat_prompt(SYSTEM, "Name a primary colour."));
    let base = llm.model.forward(&prompt, &mut KvCache::default()).unwrap();

    let zero = LoraAdapter::initial(&llm.model, 8, 16.0, 1).unwrap();
    assert_eq!(zero.tensors.len(), 2 * 7 * llm.model.config.layers);
    llm.model.set_adapter(&zero).unwrap();
    assert_eq!(max_abs_diff(&llm.model.forward(&prompt, &mut KvCache::default()).unwrap(), &base).unwrap(), 0.0);

    let mut changed = zero.clone();
    for (name, tensor) in changed.tensors.iter_mut() {
        if name.ends_with(".lora_b") {
            *tensor = (Tensor::ones(tensor.dims(), tensor.dtype(), tensor.device()).unwrap() * 0.01).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.safetensors");
    // An adapter keeps the observation format it was trained to read.
    use sepsis_core::agent::observation::ObservationFormat;
    assert_eq!(zero.observation, ObservationFormat::Course);
    changed.observation = ObservationFormat::CourseAndLoggedPractice;
    changed.save(&path).unwrap();
    let loaded = LoraAdapter::from_safetensors(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!((loaded.rank, loaded.alpha, loaded.observation), (8, 16.0, ObservationFormat::CourseAndLoggedPractice));
    llm.model.set_adapter(&loaded).unwrap();
    let adapted = llm.model.forward(&prompt, &mut KvCache::default()).unwrap();
    assert!(max_abs_diff(&adapted, &base).unwrap() > 0.1, "a non-zero adapter moves the logits");
    llm.model.set_adapter(&changed).unwrap();
    assert_eq!(max_abs_diff(&llm.model.forward(&prompt, &mut KvCache::default()).unwrap(), &adapted).unwrap(), 0.0);

    let mut misnamed = zero.clone();
    let a = misnamed.tensors.remove("blk.0.attn_q.lora_a").unwrap();
    misnamed.tensors.insert("blk.0.attn_z.lora_a".into(), a);
    let error = llm.model.set_adapter(&misnamed).unwrap_err().to_string();
    assert!(error.contains("blk.0.attn_z.lora_a") || error.contains("blk.0.attn_q.lora_b"), "{error}");
    let mut misshapen = zero.clone();
    misshapen.tensors.insert("blk.3.ffn_down.lora_b".into(), Tensor::zeros((7, 8), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap());
    let error = llm.model.set_adapter(&misshapen).unwrap_err().to_string();
    assert!(error.contains("blk.3.ffn_down.lora_b") && error.contains("[7, 8]"), "{error}");
    // A refused adapter leaves the model as it was.
    assert_eq!(max_abs_diff(&llm.model.forward(&prompt, &mut KvCache::default()).unwrap(), &adapted).unwrap(), 0.0);
}

/// A constrained choice reads exactly one of the options, sampling only where
/// they differ; a tag-free generator never writes '<'.
#[test]
fn constrained_choices_and_tag_free_thoughts() {
    let llm = llm();
    let mut session = llm.session();
    session.read(&chat_prompt(SYSTEM, "What color is the sky on a clear day?")).unwrap();
    let options = vec!["Green, like grass.".to_string(), "Blue, like the sea.".to_string()];
    let mut reader = session.clone();
    let Choice { index, text, sampled } = reader.choose(&options, &mut Generator::new(Sampling::GREEDY, 0, &[])).unwrap();
    assert_eq!((index, text.as_str(), sampled), (1, "Blue, like the sea.", 1));
    assert_eq!(reader.position(), session.position() + llm.tokenizer.encode(&text).len());
    // Shared prefixes are read, not chosen; a single option is simply read.
    let digits: Vec<String> = (0..5).map(|d| format!("vaso={d}")).collect();
    assert_eq!(session.clone().choose(&digits, &mut Generator::new(Sampling::GREEDY, 0, &[])).unwrap().sampled, 1);
    assert_eq!(session.clone().choose(&digits[2..3], &mut Generator::new(Sampling::GREEDY, 0, &[])).unwrap(), Choice { index: 0, text: "vaso=2".into(), sampled: 0 });

    let mut thinker = session.clone();
    let mut thought = thinker.tag_free(Generator::new(Sampling { temperature: 1.0, top_p: 1.0, seed: 3 }, 40, &["\n"])).unwrap();
    while thinker.next_token(&mut thought).unwrap().is_some() {}
    assert!(!thought.text().contains('<'), "{:?}", thought.text());
    assert!(thought.finished().is_some());
}

/// The training copy (dequantized, differentiable ops) computes what the
/// quantized model computes, and every adapter tensor receives gradient
/// (candle's fused ops would silently stop it: toolchain.md).
#[test]
fn the_training_model_matches_and_every_adapter_tensor_gets_gradient() {
    use candle_core::{Tensor, Var};
    use sepsis_core::llm::model::{max_abs_diff, KvCache, LoraAdapter};
    let llm = load();
    let tokens = llm.tokenizer.encode(&chat_prompt(SYSTEM, "MAP 58, lactate 4.1."));
    let mut dense = llm.model.for_training().unwrap();
    let quantized = llm.model.forward(&tokens, &mut KvCache::default()).unwrap();
    let unadapted = dense.forward(&tokens, &mut KvCache::default()).unwrap();
    // The quantized matmuls also round the activations to 8 bits.
    let diff = max_abs_diff(&unadapted, &quantized).unwrap();
    let mean = (&unadapted - &quantized).unwrap().abs().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1.0 && mean < 0.2, "dense and quantized logits differ by {diff} at most, {mean} on average");
    assert_eq!(unadapted.argmax(0).unwrap().to_scalar::<u32>().unwrap(), quantized.argmax(0).unwrap().to_scalar::<u32>().unwrap());

    // B small but not zero, so A receives gradient at once too.
    let adapter = LoraAdapter::initial(&llm.model, 4, 8.0, 5).unwrap();
    let vars: std::collections::HashMap<String, Var> = adapter
        .tensors
        .iter()
        .map(|(name, t)| {
            let t = if name.ends_with(".lora_b") { (Tensor::ones(t.dims(), t.dtype(), t.device()).unwrap() * 1e-3).unwrap() } else { t.clone() };
            (name.clone(), Var::from_tensor(&t).unwrap())
        })
        .collect();
    let tensors = vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    dense.set_adapter(&LoraAdapter { tensors, ..adapter.clone() }).unwrap();
    let hidden = dense.hidden(&tokens[..tokens.len() - 1], &mut KvCache::default()).unwrap();
    let logits = dense.logits(&hidden).unwrap();
    let targets = Tensor::new(&tokens[1..], &candle_core::Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let mut silent: Vec<&String> = vars.iter().filter(|(_, v)| grads.get(v.as_tensor()).map_or(true, |g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0)).map(|(n, _)| n).collect();
    silent.sort();
    assert!(silent.is_empty(), "{} of {} adapter tensors got no gradient, e.g. {:?}", silent.len(), vars.len(), &silent[..silent.len().min(5)]);
}
