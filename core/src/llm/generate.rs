//! Running the agent's LLM ([`super::model::Llama`]) with a KV cache, seeded
//! greedy or temperature / top-p sampling, stop sequences and a token budget.
//! A [`Session`] holds one conversation's KV cache; cloning a session after
//! the fixed system prompt is how that prompt is computed once and reused for
//! every decision (the cache's tensors are shared, not copied).

use std::io::{Read, Seek};
use std::sync::{Arc, OnceLock};

use candle_core::quantized::gguf_file::Content;
use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as CandleSampling};
use serde::{Deserialize, Serialize};

use super::model::{KvCache, Llama};
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
    /// -inf on every token whose text contains '<', 0 elsewhere (built on
    /// first use): a constrained thought cannot start a tag.
    tag_free: OnceLock<Tensor>,
}

impl Llm {
    pub fn from_gguf<R: Read + Seek>(reader: &mut R) -> Result<Self> {
        let content = Content::read(reader)?;
        let tokenizer = ChatTokenizer::from_gguf(&content).map_err(candle_core::Error::wrap)?;
        let model = Llama::from_gguf(&content, reader)?;
        Ok(Self { model, tokenizer, tag_free: OnceLock::new() })
    }

    /// A fresh conversation (empty KV cache).
    /// The same base with `adapter` applied (the quantized weights are
    /// shared, not copied).
    pub fn with_adapter(&self, adapter: &crate::llm::model::LoraAdapter) -> std::result::Result<Self, crate::llm::model::AdapterError> {
        let mut model = self.model.clone();
        model.set_adapter(adapter)?;
        Ok(Self { model, tokenizer: self.tokenizer.clone(), tag_free: self.tag_free.clone() })
    }

    pub fn session(self: &Arc<Self>) -> Session {
        Session { llm: self.clone(), cache: KvCache::default(), logits: None }
    }

    fn tag_free_mask(&self) -> Result<&Tensor> {
        if let Some(mask) = self.tag_free.get() {
            return Ok(mask);
        }
        let vocab = self.model.config.vocab;
        let values: Vec<f32> = (0..vocab as u32).map(|t| if self.tokenizer.decode(&[t]).contains('<') || t == self.tokenizer.im_start { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(values, vocab, &candle_core::Device::Cpu)?;
        Ok(self.tag_free.get_or_init(|| mask))
    }
}

/// One conversation: the tokens read so far live in the KV cache. Cloning
/// shares the model and the cached tensors.
#[derive(Clone)]
pub struct Session {
    llm: Arc<Llm>,
    cache: KvCache,
    /// Next-token logits after the last token read.
    logits: Option<Tensor>,
}

/// Text being generated one token at a time ([`Session::next_token`]).
pub struct Generator {
    processor: LogitsProcessor,
    max_tokens: usize,
    stop: Vec<String>,
    /// Added to the logits before sampling (-inf bans a token).
    bias: Option<Tensor>,
    tokens: Vec<u32>,
    text: String,
    finished: Option<StopReason>,
    /// Benchmarks: an end-of-turn token is read like any other.
    through_end_of_turn: bool,
}

impl Generator {
    pub fn new(sampling: Sampling, max_tokens: usize, stop: &[&str]) -> Self {
        Self { processor: sampling.processor(), max_tokens, stop: stop.iter().map(|s| s.to_string()).collect(), bias: None, tokens: Vec::new(), text: String::new(), finished: None, through_end_of_turn: false }
    }

    /// Keep going past the model's end of turn (decode benchmarks write an
    /// exact number of tokens).
    pub fn ignoring_end_of_turn(mut self) -> Self {
        self.through_end_of_turn = true;
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn finished(&self) -> Option<&StopReason> {
        self.finished.as_ref()
    }

    pub fn into_generation(self, cancelled: bool) -> Generation {
        let stop = if cancelled && self.finished.is_none() { StopReason::Cancelled } else { self.finished.unwrap_or(StopReason::Cancelled) };
        Generation { tokens: self.tokens, text: self.text, stop }
    }
}

/// A constrained choice: which option was taken, and the text read for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub index: usize,
    pub text: String,
    /// Tokens the model chose (the rest of the option was forced).
    pub sampled: usize,
}

impl Session {
    /// Tokens read so far.
    pub fn position(&self) -> usize {
        self.cache.len()
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

    fn current_logits(&self) -> Result<&Tensor> {
        self.logits.as_ref().ok_or_else(|| candle_core::Error::Msg("generation before any prompt was read".into()))
    }

    /// A generator whose tokens never contain '<' (a thought before a
    /// constrained tool call).
    pub fn tag_free(&self, mut generator: Generator) -> Result<Generator> {
        generator.bias = Some(self.llm.tag_free_mask()?.clone());
        Ok(generator)
    }

    /// One more token: its text, or `None` once the generator has finished
    /// (the model ended its turn, a stop sequence appeared, or the budget ran
    /// out; see [`Generator::finished`]). The end-of-turn token is not read.
    pub fn next_token(&mut self, generator: &mut Generator) -> Result<Option<String>> {
        if generator.finished.is_some() {
            return Ok(None);
        }
        if generator.tokens.len() >= generator.max_tokens {
            generator.finished = Some(StopReason::Budget);
            return Ok(None);
        }
        let logits = self.current_logits()?;
        let token = match &generator.bias {
            Some(bias) => generator.processor.sample(&(logits + bias)?)?,
            None => generator.processor.sample(logits)?,
        };
        let tokenizer = &self.llm.tokenizer;
        if !generator.through_end_of_turn && (token == tokenizer.im_end || token == tokenizer.end_of_text) {
            generator.finished = Some(StopReason::EndOfTurn);
            return Ok(None);
        }
        generator.tokens.push(token);
        // Decode the whole answer each time: a multi-byte character may
        // span tokens, and only the full sequence decodes it correctly.
        let decoded = tokenizer.decode(&generator.tokens);
        let piece = decoded.get(generator.text.len()..).unwrap_or("").to_string();
        generator.text = decoded;
        self.read_tokens(&[token])?;
        if let Some(found) = generator.stop.iter().find(|s| generator.text.contains(s.as_str())) {
            generator.finished = Some(StopReason::StopSequence(found.clone()));
        }
        Ok(Some(piece))
    }

    /// Generate until the model ends its turn, the text contains a stop
    /// sequence, `max_tokens` are written, or `on_token` says stop. The
    /// callback sees each token's text as it is decoded.
    pub fn generate(&mut self, sampling: Sampling, max_tokens: usize, stop: &[&str], mut on_token: impl FnMut(&str) -> Flow) -> Result<Generation> {
        let mut generator = Generator::new(sampling, max_tokens, stop);
        while let Some(piece) = self.next_token(&mut generator)? {
            if on_token(&piece) == Flow::Stop && generator.finished.is_none() {
                return Ok(generator.into_generation(true));
            }
        }
        Ok(generator.into_generation(false))
    }

    /// Read one of `options` (whole continuations), letting the model choose
    /// where they differ: tokens all remaining options share are read as
    /// they are; at a branch the model picks among the branches' first
    /// tokens only (by `generator`'s sampling). This is how a tool call is
    /// written exactly to the grammar.
    pub fn choose(&mut self, options: &[String], generator: &mut Generator) -> Result<Choice> {
        if options.is_empty() {
            candle_core::bail!("choose() needs at least one option");
        }
        let encoded: Vec<Vec<u32>> = options.iter().map(|o| self.llm.tokenizer.encode(o)).collect();
        let mut alive: Vec<usize> = (0..options.len()).collect();
        let (mut at, mut sampled) = (0, 0);
        let mut forced: Vec<u32> = Vec::new();
        loop {
            // Options fully read end the choice (the shortest one wins a tie).
            if let Some(&done) = alive.iter().find(|&&o| encoded[o].len() == at) {
                self.read_tokens(&forced)?;
                return Ok(Choice { index: done, text: options[done].clone(), sampled });
            }
            let mut next: Vec<u32> = alive.iter().map(|&o| encoded[o][at]).collect();
            next.sort_unstable();
            next.dedup();
            let token = if next.len() == 1 {
                next[0]
            } else {
                // The branch is sampled from the model's logits after what is read.
                self.read_tokens(&forced)?;
                forced.clear();
                let logits = self.current_logits()?;
                let allowed = logits.index_select(&Tensor::new(next.as_slice(), &candle_core::Device::Cpu)?, 0)?;
                sampled += 1;
                next[generator.processor.sample(&allowed)? as usize]
            };
            forced.push(token);
            alive.retain(|&o| encoded[o][at] == token);
            at += 1;
        }
    }
}
