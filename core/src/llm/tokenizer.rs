//! The agent LLM's tokenizer, built from the GGUF file's own vocabulary and
//! merges with the `tokenizers` crate, so the model and its tokenizer can
//! never come from different sources.
//!
//! SmolLM2 is a byte-level BPE whose pre-tokenizer isolates every digit, then
//! splits with the GPT-2 pattern without a prefix space. candle's
//! `TokenizerFromGguf` adds a prefix space and gets this model wrong
//! (toolchain.md); `core/tests/tokenizer_reference.rs` proves this one
//! against an independent implementation.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// GGUF `tokenizer.ggml.token_type` of control tokens (`<|im_start|>`, ...).
const CONTROL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the GGUF file has no {0} (not a tokenizer this project knows)")]
    Missing(&'static str),
    #[error("{key}: expected {expected}")]
    Shape { key: &'static str, expected: &'static str },
    #[error("building the BPE tokenizer: {0}")]
    Build(String),
    #[error("the vocabulary has no {0} token")]
    Special(&'static str),
}

#[derive(Clone)]
pub struct ChatTokenizer {
    inner: Tokenizer,
    pub im_start: u32,
    pub im_end: u32,
    pub end_of_text: u32,
}

fn strings(content: &Content, key: &'static str) -> Result<Vec<String>, TokenizerError> {
    let Some(Value::Array(values)) = content.metadata.get(key) else { return Err(TokenizerError::Missing(key)) };
    values
        .iter()
        .map(|v| v.to_string().cloned().map_err(|_| TokenizerError::Shape { key, expected: "an array of strings" }))
        .collect()
}

impl ChatTokenizer {
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let tokens = strings(content, "tokenizer.ggml.tokens")?;
        let merges = strings(content, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(values)) => values.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => return Err(TokenizerError::Missing("tokenizer.ggml.token_type")),
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges = merges
            .iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenizerError::Shape { key: "tokenizer.ggml.merges", expected: "pairs separated by a space" })?;
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()];
        inner.with_pre_tokenizer(Some(Sequence::new(pre)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> =
            tokens.iter().zip(&types).filter(|(_, &t)| t == CONTROL).map(|(token, _)| AddedToken::from(token.clone(), true)).collect();
        inner.add_special_tokens(specials).map_err(|e| TokenizerError::Build(e.to_string()))?;
        let id = |name: &'static str| inner.token_to_id(name).ok_or(TokenizerError::Special(name));
        Ok(Self { im_start: id("<|im_start|>")?, im_end: id("<|im_end|>")?, end_of_text: id("<|endoftext|>")?, inner })
    }

    /// Token ids of `text`; control tokens written in the text are recognised.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner.encode_fast(text, false).expect("byte-level BPE encodes every string").get_ids().to_vec()
    }

    /// The text of `ids`, control tokens included as written.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).expect("every id comes from this vocabulary")
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The model's chat template (ChatML, as SmolLM2-Instruct was tuned with):
/// the system turn, the user turn, and the opening of the assistant's turn.
pub fn chat_prompt(system: &str, user: &str) -> String {
    format!("{}{}", system_turn(system), user_turn(user))
}

/// The system turn, read once per conversation.
pub fn system_turn(system: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|>\n")
}

/// A user turn and the opening of the assistant's reply.
pub fn user_turn(user: &str) -> String {
    format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

/// After an assistant turn the loop answered (a tool result): close the
/// assistant's turn, the user's answer, and open the next assistant turn.
pub fn answer_turn(answer: &str) -> String {
    format!("<|im_end|>\n{}", user_turn(answer))
}
