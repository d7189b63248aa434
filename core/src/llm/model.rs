//! SmolLM2 (a llama) forward pass over the quantized GGUF weights, with LoRA
//! adapters applied on top of the quantized projections.
//!
//! Our own rather than candle-transformers' `quantized_llama` because the
//! adapters need a hook in every projection (its fields are private), and
//! because the KV cache is a value here: cloning a [`KvCache`] after the
//! fixed system prompt shares its tensors, so that prompt is computed once.
//! The arithmetic is the same as `quantized_llama` (interleaved rope, RMS
//! norm, grouped-query attention, SwiGLU); `tests/llm_generation.rs` checks the
//! logits against it.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor, D};

use super::frozen_linear::FrozenLinear;
use crate::agent::observation::ObservationFormat;
use super::q8_matmul::Q8Matrix;

/// The projections an adapter may change, by their GGUF names.
pub const ADAPTED: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// Longest conversation the rope tables cover (tokens).
pub const MAX_POSITIONS: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub hidden: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub vocab: usize,
}

/// A low-rank update `scale * B A` of one projection: `a` is (rank, in),
/// `b` is (out, rank).
#[derive(Clone, Debug)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

/// A frozen weight matrix. At inference: Q8_0 through our kernel
/// (`q8_matmul.rs`: f32 scales repacked once, simd128 in the browser, AVX2
/// natively where the CPU has it; candle's kernel converts f16 scales per
/// block, and without compile-time AVX flags natively runs its portable
/// loop), candle's quantized matmul for other block types. On the training
/// copy: dense f32, where only the input's gradient is computed.
#[derive(Clone, Debug)]
enum Weights {
    Q8(Arc<Q8Matrix>),
    Candle(QMatMul),
    Dense(Tensor),
}

impl Weights {
    fn from_qtensor(tensor: QTensor) -> Result<Self> {
        if let Some(matrix) = Q8Matrix::from_qtensor(&tensor)? {
            return Ok(Weights::Q8(Arc::new(matrix)));
        }
        Ok(Weights::Candle(QMatMul::from_qtensor(tensor)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weights::Q8(matrix) => matrix.forward(x),
            Weights::Candle(q) => q.forward(x),
            Weights::Dense(w) => FrozenLinear::forward(w, x),
        }
    }

    /// The same weights as dense f32, for training.
    fn dense(&self) -> Result<Self> {
        Ok(Weights::Dense(match self {
            Weights::Q8(matrix) => matrix.dequantize()?,
            Weights::Candle(QMatMul::QTensor(t)) => t.dequantize(&Device::Cpu)?,
            Weights::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.to_dtype(DType::F32)?,
            Weights::Dense(t) => t.clone(),
        }))
    }

    /// Rows of the matrix: the outputs.
    fn outputs(&self) -> Result<usize> {
        match self {
            Weights::Q8(matrix) => Ok(matrix.outputs()),
            Weights::Candle(QMatMul::QTensor(t)) => Ok(t.shape().dims()[0]),
            Weights::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) | Weights::Dense(t) => t.dim(0),
        }
    }
}

#[derive(Clone, Debug)]
struct Projection {
    base: Weights,
    lora: Option<Lora>,
}

impl Projection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.base.forward(x)?;
        match &self.lora {
            None => Ok(y),
            Some(l) => y + (x.broadcast_matmul(&l.a.t()?)?.broadcast_matmul(&l.b.t()?)? * l.scale)?,
        }
    }
}

#[derive(Clone, Debug)]
struct Block {
    attn_norm: Tensor,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    ffn_norm: Tensor,
    gate: Projection,
    up: Projection,
    down: Projection,
}

impl Block {
    fn projection_mut(&mut self, name: &str) -> Option<&mut Projection> {
        Some(match name {
            "attn_q" => &mut self.q,
            "attn_k" => &mut self.k,
            "attn_v" => &mut self.v,
            "attn_output" => &mut self.o,
            "ffn_gate" => &mut self.gate,
            "ffn_up" => &mut self.up,
            "ffn_down" => &mut self.down,
            _ => return None,
        })
    }
}

/// The keys and values of every layer for the tokens read so far.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvCache {
    /// The same keys and values cut from the autograd graph: training reads
    /// the prompt prefix its examples share once per step, without
    /// backpropagating into it.
    pub fn detached(&self) -> Self {
        Self { layers: self.layers.iter().map(|(k, v)| (k.detach(), v.detach())).collect(), len: self.len }
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Clone, Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    embeddings: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    /// The tied embeddings, quantized, as the output head.
    output: Weights,
    cos: Tensor,
    sin: Tensor,
    /// Training: dequantized weights and ops that carry gradients (candle's
    /// fused rope, RMS norm and softmax have no backward, and its quantized
    /// matmul none to its input: gradients would silently stop there).
    differentiable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapter tensor {0:?} is not one of this model's projections (blk.N.{{{list}}}.lora_a/lora_b)", list = ADAPTED.join(","))]
    Unknown(String),
    #[error("adapter tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("adapter has {0} without its partner ({1})")]
    Unpaired(String, String),
    #[error("adapter: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("adapter tensor {0}")]
    Invalid(String),
}

impl Llama {
    pub fn from_gguf<R: Read + Seek>(content: &Content, reader: &mut R) -> Result<Self> {
        let device = Device::Cpu;
        let meta = |key: &str| content.metadata.get(key).ok_or_else(|| candle_core::Error::Msg(format!("GGUF has no {key}")));
        let heads = meta("llama.attention.head_count")?.to_u32()? as usize;
        let hidden = meta("llama.embedding_length")?.to_u32()? as usize;
        let config = LlamaConfig {
            layers: meta("llama.block_count")?.to_u32()? as usize,
            heads,
            kv_heads: meta("llama.attention.head_count_kv")?.to_u32()? as usize,
            hidden,
            head_dim: hidden / heads,
            rms_eps: meta("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: meta("llama.rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0),
            vocab: 0,
        };
        let token_embd = content.tensor(reader, "token_embd.weight", &device)?;
        let embeddings = token_embd.dequantize(&device)?;
        let config = LlamaConfig { vocab: embeddings.dim(0)?, ..config };
        let mut tensor = |name: String| content.tensor(reader, &name, &device);
        let mut blocks = Vec::with_capacity(config.layers);
        for layer in 0..config.layers {
            let mut projection = |name: &str| -> Result<Projection> {
                Ok(Projection { base: Weights::from_qtensor(tensor(format!("blk.{layer}.{name}.weight"))?)?, lora: None })
            };
            let (q, k, v, o) = (projection("attn_q")?, projection("attn_k")?, projection("attn_v")?, projection("attn_output")?);
            let (gate, up, down) = (projection("ffn_gate")?, projection("ffn_up")?, projection("ffn_down")?);
            blocks.push(Block {
                attn_norm: tensor(format!("blk.{layer}.attn_norm.weight"))?.dequantize(&device)?,
                ffn_norm: tensor(format!("blk.{layer}.ffn_norm.weight"))?.dequantize(&device)?,
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
            });
        }
        let norm = tensor("output_norm.weight".into())?.dequantize(&device)?;
        // SmolLM2 ties its output head to the embeddings (no output.weight).
        let output = match content.tensor(reader, "output.weight", &device) {
            Ok(head) => Weights::from_qtensor(head)?,
            Err(_) => Weights::from_qtensor(token_embd)?,
        };
        let (cos, sin) = rope_tables(config.head_dim, config.rope_base, &device)?;
        Ok(Self { config, embeddings, blocks, norm, output, cos, sin, differentiable: false })
    }

    /// A copy to train adapters on: every projection dequantized to f32 and
    /// the ops that carry gradients. Slower and about 4x the memory; the
    /// trained adapters then run on the quantized model.
    pub fn for_training(&self) -> Result<Self> {
        let mut model = self.clone();
        for block in &mut model.blocks {
            for name in ADAPTED {
                let projection = block.projection_mut(name).expect("known projection");
                projection.base = projection.base.dense()?;
            }
        }
        model.output = model.output.dense()?;
        model.differentiable = true;
        Ok(model)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        if self.differentiable {
            candle_nn::ops::rms_norm_slow(x, weight, self.config.rms_eps as f32)
        } else {
            candle_nn::ops::rms_norm(x, weight, self.config.rms_eps as f32)
        }
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if self.differentiable {
            candle_nn::rotary_emb::rope_i_slow(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope_i(x, cos, sin)
        }
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        if self.differentiable {
            candle_nn::ops::softmax(x, D::Minus1)
        } else {
            candle_nn::ops::softmax_last_dim(x)
        }
    }

    /// Put `adapter` on top of the base projections (replacing any earlier
    /// one). Every tensor must name a projection and fit its shape. The
    /// adapter's own tensors are used (f32 ones are not copied), so on the
    /// training copy gradients reach the optimiser's variables.
    pub fn set_adapter(&mut self, adapter: &LoraAdapter) -> std::result::Result<(), AdapterError> {
        let mut loras = Vec::new();
        for (name, a) in &adapter.tensors {
            let Some(stem) = name.strip_suffix(".lora_a") else {
                if name.ends_with(".lora_b") {
                    let partner = name.replace(".lora_b", ".lora_a");
                    if !adapter.tensors.contains_key(&partner) {
                        return Err(AdapterError::Unpaired(name.clone(), partner));
                    }
                    continue;
                }
                return Err(AdapterError::Unknown(name.clone()));
            };
            let b_name = format!("{stem}.lora_b");
            let b = adapter.tensors.get(&b_name).ok_or_else(|| AdapterError::Unpaired(name.clone(), b_name.clone()))?;
            let (layer, projection) = parse_stem(stem).ok_or_else(|| AdapterError::Unknown(name.clone()))?;
            let (out, inp) = self.projection_dims(layer, projection).ok_or_else(|| AdapterError::Unknown(name.clone()))?;
            let shape_check = |n: &str, t: &Tensor, expected: Vec<usize>| {
                if t.dims() == expected.as_slice() { Ok(()) } else { Err(AdapterError::Shape { name: n.into(), found: t.dims().to_vec(), expected }) }
            };
            shape_check(name, a, vec![adapter.rank, inp])?;
            shape_check(&b_name, b, vec![out, adapter.rank])?;
            loras.push((layer, projection, Lora { a: a.to_dtype(DType::F32)?, b: b.to_dtype(DType::F32)?, scale: adapter.scale() }));
        }
        self.clear_adapter();
        for (layer, projection, lora) in loras {
            self.blocks[layer].projection_mut(projection).expect("checked above").lora = Some(lora);
        }
        Ok(())
    }

    pub fn clear_adapter(&mut self) {
        for block in &mut self.blocks {
            for name in ADAPTED {
                block.projection_mut(name).expect("known projection").lora = None;
            }
        }
    }

    /// (out, in) of a projection.
    pub fn projection_dims(&self, layer: usize, projection: &str) -> Option<(usize, usize)> {
        let c = &self.config;
        let kv = c.kv_heads * c.head_dim;
        let intermediate = self.blocks.get(layer)?.up.base.outputs().ok()?;
        Some(match projection {
            "attn_q" | "attn_output" => (c.hidden, c.hidden),
            "attn_k" | "attn_v" => (kv, c.hidden),
            "ffn_gate" | "ffn_up" => (intermediate, c.hidden),
            "ffn_down" => (c.hidden, intermediate),
            _ => return None,
        })
    }

    /// Read `tokens` after what `cache` holds; the next-token logits after
    /// the last of them, shape (vocab).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.hidden(tokens, cache)?;
        self.logits(&hidden.narrow(0, tokens.len() - 1, 1)?)?.flatten_all()
    }

    /// Next-token logits from rows of [`Self::hidden`], (rows, vocab).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.output.forward(hidden)
    }

    /// Read `tokens` after what `cache` holds; the final (normed) hidden
    /// state of each, shape (tokens, hidden).
    pub fn hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let c = &self.config;
        let (seq, start) = (tokens.len(), cache.len);
        if start + seq > MAX_POSITIONS {
            candle_core::bail!("the conversation is {} tokens; this model reads at most {MAX_POSITIONS}", start + seq);
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self.embeddings.index_select(&ids, 0)?.unsqueeze(0)?;
        let mask = (seq > 1).then(|| causal_mask(seq, start, c.heads / c.kv_heads)).transpose()?;
        let (cos, sin) = (self.cos.narrow(0, start, seq)?, self.sin.narrow(0, start, seq)?);
        let mut updated = Vec::with_capacity(c.layers);
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = self.rms_norm(&x, &block.attn_norm)?;
            let heads = |t: Tensor, n: usize| t.reshape((1, seq, n, c.head_dim))?.transpose(1, 2)?.contiguous();
            let q = self.rope(&heads(block.q.forward(&h)?, c.heads)?, &cos, &sin)?;
            let k = self.rope(&heads(block.k.forward(&h)?, c.kv_heads)?, &cos, &sin)?;
            let v = heads(block.v.forward(&h)?, c.kv_heads)?;
            let (k, v) = match cache.layers.get(layer) {
                Some((k0, v0)) => (Tensor::cat(&[k0, &k], 2)?, Tensor::cat(&[v0, &v], 2)?),
                None => (k, v),
            };
            updated.push((k.clone(), v.clone()));
            // Grouped-query attention without copying K and V per query head:
            // the query heads sharing a KV head are stacked along the rows.
            let group = c.heads / c.kv_heads;
            let q = q.reshape((1, c.kv_heads, group * seq, c.head_dim))?;
            let mut scores = (q.matmul(&k.t()?)? / (c.head_dim as f64).sqrt())?;
            if let Some(mask) = &mask {
                scores = scores.broadcast_add(mask)?;
            }
            let attention = self.softmax(&scores)?.matmul(&v)?;
            let attention = attention.reshape((1, c.heads, seq, c.head_dim))?.transpose(1, 2)?.reshape((1, seq, c.hidden))?;
            x = (x + block.o.forward(&attention)?)?;
            let h = self.rms_norm(&x, &block.ffn_norm)?;
            let gated = (candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?;
            x = (x + block.down.forward(&gated)?)?;
        }
        cache.layers = updated;
        cache.len += seq;
        self.rms_norm(&x.squeeze(0)?, &self.norm)
    }
}

/// `blk.N.NAME` -> (N, NAME) for an adapted projection.
fn parse_stem(stem: &str) -> Option<(usize, &'static str)> {
    let rest = stem.strip_prefix("blk.")?;
    let (layer, name) = rest.split_once('.')?;
    Some((layer.parse().ok()?, ADAPTED.into_iter().find(|p| *p == name)?))
}

/// Additive mask over `group` stacked copies of the queries: row r is query
/// r % seq (at position start + r % seq), which sees keys 0..=start + r % seq.
fn causal_mask(seq: usize, start: usize, group: usize) -> Result<Tensor> {
    let kv = start + seq;
    let values: Vec<f32> = (0..group * seq).flat_map(|r| (0..kv).map(move |j| if j > start + r % seq { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(values, (group * seq, kv), &Device::Cpu)
}

fn rope_tables(head_dim: usize, base: f32, device: &Device) -> Result<(Tensor, Tensor)> {
    let inverse: Vec<f32> = (0..head_dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / head_dim as f32)).collect();
    let inverse = Tensor::new(inverse.as_slice(), device)?.reshape((1, head_dim / 2))?;
    let positions = Tensor::arange(0, MAX_POSITIONS as u32, device)?.to_dtype(DType::F32)?.reshape((MAX_POSITIONS, 1))?;
    let angles = positions.matmul(&inverse)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// LoRA adapters for the projections in [`ADAPTED`], as safetensors:
/// `blk.N.PROJ.lora_a` (rank, in) and `blk.N.PROJ.lora_b` (out, rank), a
/// one-element `lora_alpha` (the update is scaled by alpha / rank), and a
/// one-element `observation_format`, the user turn the adapter was trained
/// to read (absent in adapters older than it: the course alone).
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    pub rank: usize,
    pub alpha: f64,
    pub observation: ObservationFormat,
    pub tensors: HashMap<String, Tensor>,
}

impl LoraAdapter {
    pub const ALPHA: &'static str = "lora_alpha";
    pub const OBSERVATION_FORMAT: &'static str = "observation_format";

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The usual start of training: A small and random, B zero, so the
    /// adapted model equals the base.
    pub fn initial(model: &Llama, rank: usize, alpha: f64, seed: u64) -> Result<Self> {
        let mut tensors = HashMap::new();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for layer in 0..model.config.layers {
            for name in ADAPTED {
                let (out, inp) = model.projection_dims(layer, name).expect("known projection");
                let bound = (1.0 / inp as f64).sqrt();
                let a: Vec<f32> = (0..rank * inp)
                    .map(|_| {
                        // xorshift64*: reproducible everywhere without a rand dependency.
                        state ^= state >> 12;
                        state ^= state << 25;
                        state ^= state >> 27;
                        let unit = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
                        ((2.0 * unit - 1.0) * bound) as f32
                    })
                    .collect();
                tensors.insert(format!("blk.{layer}.{name}.lora_a"), Tensor::from_vec(a, (rank, inp), &Device::Cpu)?);
                tensors.insert(format!("blk.{layer}.{name}.lora_b"), Tensor::zeros((out, rank), DType::F32, &Device::Cpu)?);
            }
        }
        Ok(Self { rank, alpha, observation: ObservationFormat::Course, tensors })
    }

    pub fn from_safetensors(bytes: &[u8]) -> std::result::Result<Self, AdapterError> {
        let mut tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let alpha = tensors
            .remove(Self::ALPHA)
            .ok_or_else(|| AdapterError::Unknown(format!("{} (missing)", Self::ALPHA)))?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let rank = tensors
            .iter()
            .find(|(n, _)| n.ends_with(".lora_a"))
            .map(|(_, t)| t.dim(0))
            .transpose()?
            .ok_or_else(|| AdapterError::Unknown("(no lora_a tensor)".into()))?;
        let observation = match tensors.remove(Self::OBSERVATION_FORMAT) {
            None => ObservationFormat::Course,
            Some(code) => {
                let code = code.flatten_all()?.to_vec1::<u8>()?;
                code.first()
                    .and_then(|&c| ObservationFormat::from_code(c))
                    .ok_or_else(|| AdapterError::Invalid(format!("{} holds {code:?}, expected one byte, 0 (course) or 1 (course and logged practice)", Self::OBSERVATION_FORMAT)))?
            }
        };
        Ok(Self { rank, alpha: alpha.first().copied().unwrap_or(rank as f64), observation, tensors })
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let mut all = self.tensors.clone();
        all.insert(Self::ALPHA.into(), Tensor::new(&[self.alpha as f32], &Device::Cpu)?);
        all.insert(Self::OBSERVATION_FORMAT.into(), Tensor::new(&[self.observation.code()], &Device::Cpu)?);
        candle_core::safetensors::save(&all, path)
    }
}

/// Largest absolute difference between two logit vectors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.max(D::Minus1)?.to_scalar::<f32>()
}
