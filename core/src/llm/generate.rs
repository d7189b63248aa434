//! Running the agent's LLM ([`super::model::Llama`]) with a KV cache, seeded
//! greedy or temperature / top-p sampling, stop sequences and a token budget.
//! A [`Session`] holds one conversation's KV cache; cloning a session after
//! the fixed system prompt is how that prompt is computed once and reused for
//! every decision (the cache's tensors are shared, not copied).

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as CandleSampling};
use serde::{Deserialize, Serialize};

use super::model::{AdapterError, KvCache, Llama, LoraAdapter};
use super::tokenizer::ChatTokenizer;

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 = greedy (argmax).
    pub temperature: f64,
    /// Nucleus: sample from the smallest set of tokens with this much mass (1 = all).
    pub top_p: f64,
    pub seed: u64,
}

impl Sampling {
    pub const GREEDY: Sampling = Sampling { temperature: 0.0, top_p: 1.0, seed: 0 };

    fn processor(self) -> LogitsProcessor {
        let sampling = if self.temperature <= 0.0 {
            CandleSampling::ArgMax
        } else if self.top_p < 1.0 {
            CandleSampling::TopP { p: self.top_p, temperature: self.temperature }
        } else {
            CandleSampling::All { temperature: self.temperature }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The model ended its turn (`<|im_end|>` or `<|endoftext|>`).
    EndOfTurn,
    /// The text reached one of the stop sequences (which is kept in the text).
    StopSequence(String),
    /// The token budget ran out.
    Budget,
    /// The caller asked to stop (e.g. the user cancelled).
    Cancelled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
}

/// What the per-token callback tells the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

pub struct Llm {
    pub model: Llama,
    pub tokenizer: ChatTokenizer,
}

impl Llm {
    pub fn from_gguf<R: Read + Seek>(reader: &mut R) -> Result<Self> {
        let content = Content::read(reader)?;
        let tokenizer = ChatTokenizer::from_gguf(&content).map_err(candle_core::Error::wrap)?;
        let model = Llama::from_gguf(&content, reader)?;
        Ok(Self { model, tokenizer })
    }

    /// Put LoRA adapters on the base model (a fine-tuned agent).
    pub fn set_adapter(&mut self, adapter: &LoraAdapter) -> std::result::Result<(), AdapterError> {
        self.model.set_adapter(adapter)
    }

    /// A fresh conversation (empty KV cache).
    pub fn session(&self) -> Session<'_> {
        Session { llm: self, cache: KvCache::default(), logits: None }
    }
}

/// One conversation: the tokens read so far live in the KV cache.
#[derive(Clone)]
pub struct Session<'a> {
    llm: &'a Llm,
    cache: KvCache,
    /// Next-token logits after the last token read.
    logits: Option<Tensor>,
}

impl Session<'_> {
    /// Tokens read so far.
    pub fn position(&self) -> usize {
        self.cache.len()
    }

    /// Next-token logits after the last token read.
    pub fn logits(&self) -> Option<&Tensor> {
        self.logits.as_ref()
    }

    /// Read `text` (prefill): one forward pass over all its tokens.
    pub fn read(&mut self, text: &str) -> Result<usize> {
        let tokens = self.llm.tokenizer.encode(text);
        self.read_tokens(&tokens)?;
        Ok(tokens.len())
    }

    pub fn read_tokens(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.logits = Some(self.llm.model.forward(tokens, &mut self.cache)?);
        Ok(())
    }

    /// Generate until the model ends its turn, the text contains a stop
    /// sequence, `max_tokens` are written, or `on_token` says stop. The
    /// callback sees each token's text as it is decoded.
    pub fn generate(&mut self, sampling: Sampling, max_tokens: usize, stop: &[&str], mut on_token: impl FnMut(&str) -> Flow) -> Result<Generation> {
        let mut processor = sampling.processor();
        let tokenizer = &self.llm.tokenizer;
        let (mut tokens, mut text) = (Vec::new(), String::new());
        let reason = loop {
            if tokens.len() >= max_tokens {
                break StopReason::Budget;
            }
            let logits = self.logits.as_ref().ok_or_else(|| candle_core::Error::Msg("generate() before any prompt was read".into()))?;
            let token = processor.sample(logits)?;
            if token == tokenizer.im_end || token == tokenizer.end_of_text {
                break StopReason::EndOfTurn;
            }
            tokens.push(token);
            // Decode the whole answer each time: a multi-byte character may
            // span tokens, and only the full sequence decodes it correctly.
            let decoded = tokenizer.decode(&tokens);
            let piece = decoded.get(text.len()..).unwrap_or("").to_string();
            text = decoded;
            self.read_tokens(&[token])?;
            if let Some(found) = stop.iter().find(|s| text.contains(**s)) {
                on_token(&piece);
                break StopReason::StopSequence(found.to_string());
            }
            if on_token(&piece) == Flow::Stop {
                break StopReason::Cancelled;
            }
        };
        Ok(Generation { tokens, text, stop: reason })
    }
}
