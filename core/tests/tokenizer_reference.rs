//! Our tokenizer (built from the GGUF by the `tokenizers` crate) against an
//! independent one (`scripts/reference/tokenizer_reference.py`: llama.cpp's
//! `gguf` reader and `tiktoken`), on clinical text, numbers and unicode.
//! Needs the model fetched by `make fetch`.

use sepsis_core::llm::tokenizer::{chat_prompt, ChatTokenizer};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf");
const REFERENCE: &str = include_str!("fixtures/tokenizer-reference.json");

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn tokenizer() -> ChatTokenizer {
    let mut file = std::fs::File::open(MODEL).expect("the model (run `make fetch`)");
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    ChatTokenizer::from_gguf(&content).unwrap()
}

#[test]
fn ids_match_the_independent_tokenizer_and_decode_back() {
    let tokenizer = tokenizer();
    let cases: Vec<Case> = serde_json::from_str(REFERENCE).unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        assert_eq!(tokenizer.encode(&case.text), case.ids, "{:?}", case.text);
        assert_eq!(tokenizer.decode(&case.ids), case.text);
    }
}

#[test]
fn the_chat_template_uses_single_control_tokens() {
    let tokenizer = tokenizer();
    assert_eq!((tokenizer.end_of_text, tokenizer.im_start, tokenizer.im_end), (0, 1, 2));
    assert_eq!(tokenizer.vocab_size(), 49152);
    let ids = tokenizer.encode(&chat_prompt("S", "U"));
    assert_eq!(ids.iter().filter(|&&id| id == tokenizer.im_start).count(), 3);
    assert_eq!(ids.iter().filter(|&&id| id == tokenizer.im_end).count(), 2);
    assert_eq!(tokenizer.decode(&ids), chat_prompt("S", "U"));
}
