//! The LLM's Q8_0 projections, written for the browser's CPU path. candle's
//! Q8_0 matmul stores every 32-value block's scale as f16 and converts both
//! the weight's and the activation's scale for each block product; wasm has
//! no f16 instructions, so those conversions cost about as much as the
//! integer dot product itself. Here the weights are repacked once at load
//! into i8 quants and f32 scales, activations are quantized the same way
//! (per 32 values, scale = max |x| / 127, as candle does), and each block
//! product is four i16 dot-adds (simd128 in the browser) and one f32
//! multiply-add. A few weight rows at a time meet every token row, so
//! prefill reads each weight from memory once, not once per token.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};

/// Values per quantization block (GGML's Q8_0).
pub const BLOCK: usize = 32;
/// Bytes of a GGML Q8_0 block: an f16 scale, then 32 i8 quants.
const GGML_BLOCK_BYTES: usize = 2 + BLOCK;
/// Weight rows (outputs) taken together: they stay in cache while every
/// token row is multiplied with them.
const COLS: usize = 4;

/// A weight matrix (outputs x inputs) in Q8_0 with f32 scales.
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    outputs: usize,
    inputs: usize,
    /// `outputs x inputs`, row-major.
    quants: Vec<i8>,
    /// `outputs x inputs / 32`.
    scales: Vec<f32>,
}

/// Rows quantized to Q8_0 with f32 scales.
struct Quantized {
    quants: Vec<i8>,
    scales: Vec<f32>,
}

fn quantize_rows(values: &[f32]) -> Quantized {
    let mut quants = vec![0i8; values.len()];
    let mut scales = Vec::with_capacity(values.len() / BLOCK);
    for (block, out) in values.chunks_exact(BLOCK).zip(quants.chunks_exact_mut(BLOCK)) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = amax / 127.0;
        let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        for (q, x) in out.iter_mut().zip(block) {
            *q = (x * inverse).round() as i8;
        }
        scales.push(scale);
    }
    Quantized { quants, scales }
}

impl Q8Matrix {
    /// The matrix of a 2-D Q8_0 tensor; `None` for any other type.
    pub fn from_qtensor(tensor: &QTensor) -> Result<Option<Self>> {
        let dims = tensor.shape().dims();
        if tensor.dtype() != GgmlDType::Q8_0 || dims.len() != 2 || dims[1] % BLOCK != 0 {
            return Ok(None);
        }
        let (outputs, inputs) = (dims[0], dims[1]);
        let data = tensor.data()?;
        let blocks = outputs * inputs / BLOCK;
        if data.len() != blocks * GGML_BLOCK_BYTES {
            candle_core::bail!("Q8_0 tensor of {outputs}x{inputs}: {} bytes, expected {}", data.len(), blocks * GGML_BLOCK_BYTES);
        }
        let mut quants = Vec::with_capacity(outputs * inputs);
        let mut scales = Vec::with_capacity(blocks);
        for block in data.chunks_exact(GGML_BLOCK_BYTES) {
            scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
            quants.extend(block[2..].iter().map(|&b| b as i8));
        }
        Ok(Some(Self { outputs, inputs, quants, scales }))
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The weights as f32 (outputs, inputs): what training differentiates through.
    pub fn dequantize(&self) -> Result<Tensor> {
        let values: Vec<f32> = self.quants.chunks_exact(BLOCK).zip(&self.scales).flat_map(|(q, &s)| q.iter().map(move |&v| v as f32 * s)).collect();
        Tensor::from_vec(values, (self.outputs, self.inputs), &Device::Cpu)
    }

    /// `x W^T` for `x` of shape (..., inputs).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&inputs, batch)) = dims.split_last() else { candle_core::bail!("Q8 matmul of a scalar") };
        if inputs != self.inputs {
            candle_core::bail!("Q8 matmul: input has {inputs} features, the weights {}", self.inputs);
        }
        let rows: usize = batch.iter().product();
        let values: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let activations = quantize_rows(&values);
        let mut out = vec![0f32; rows * self.outputs];
        self.multiply(&activations, rows, &mut out);
        let mut shape = batch.to_vec();
        shape.push(self.outputs);
        Tensor::from_vec(out, shape, &Device::Cpu)
    }

    fn multiply(&self, x: &Quantized, rows: usize, out: &mut [f32]) {
        let blocks = self.inputs / BLOCK;
        let (n, k) = (self.outputs, self.inputs);
        for col in (0..n).step_by(COLS) {
            let cols = COLS.min(n - col);
            for row in 0..rows {
                let xq = &x.quants[row * k..(row + 1) * k];
                let xs = &x.scales[row * blocks..(row + 1) * blocks];
                for w in col..col + cols {
                    let wq = &self.quants[w * k..(w + 1) * k];
                    let ws = &self.scales[w * blocks..(w + 1) * blocks];
                    out[row * n + w] = dot(xq, xs, wq, ws);
                }
            }
        }
    }
}

/// Sum over blocks of (x quants . w quants) * x scale * w scale.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn dot(xq: &[i8], xs: &[f32], wq: &[i8], ws: &[f32]) -> f32 {
    use std::arch::wasm32::*;
    let mut acc = f32x4_splat(0.0);
    for (b, (&sx, &sw)) in xs.iter().zip(ws).enumerate() {
        // SAFETY: both slices hold `xs.len() * BLOCK` quants (checked by the
        // callers' slicing); each load reads 8 of the block's 32 bytes.
        unsafe {
            let (x, w) = (xq.as_ptr().add(b * BLOCK), wq.as_ptr().add(b * BLOCK));
            let mut sum = i32x4_dot_i16x8(i16x8_load_extend_i8x8(x), i16x8_load_extend_i8x8(w));
            sum = i32x4_add(sum, i32x4_dot_i16x8(i16x8_load_extend_i8x8(x.add(8)), i16x8_load_extend_i8x8(w.add(8))));
            sum = i32x4_add(sum, i32x4_dot_i16x8(i16x8_load_extend_i8x8(x.add(16)), i16x8_load_extend_i8x8(w.add(16))));
            sum = i32x4_add(sum, i32x4_dot_i16x8(i16x8_load_extend_i8x8(x.add(24)), i16x8_load_extend_i8x8(w.add(24))));
            acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sum), f32x4_splat(sx * sw)));
        }
    }
    f32x4_extract_lane::<0>(acc) + f32x4_extract_lane::<1>(acc) + f32x4_extract_lane::<2>(acc) + f32x4_extract_lane::<3>(acc)
}

/// Sum over blocks of (x quants . w quants) * x scale * w scale.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot(xq: &[i8], xs: &[f32], wq: &[i8], ws: &[f32]) -> f32 {
    xq.chunks_exact(BLOCK)
        .zip(wq.chunks_exact(BLOCK))
        .zip(xs.iter().zip(ws))
        .map(|((x, w), (&sx, &sw))| x.iter().zip(w).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum::<i32>() as f32 * (sx * sw))
        .sum()
}

/// Deterministic values in [-1, 1) with a few large ones, as weights have.
fn probe_matrix(rows: usize, columns: usize, seed: u32) -> Result<Tensor> {
    let values: Vec<f32> = (0..rows * columns)
        .map(|i| {
            let h = crate::simulation::pcg_hash(i as u32 ^ seed.wrapping_mul(0x9e37_79b9));
            let v = (h as f32 / u32::MAX as f32) * 2.0 - 1.0;
            if h % 97 == 0 { v * 8.0 } else { v }
        })
        .collect();
    Tensor::from_vec(values, (rows, columns), &Device::Cpu)
}

/// The largest difference between this kernel and candle's Q8_0 matmul on a
/// fixed problem (1, 7 and 19 token rows against 74 x 576 weights: groups of
/// four rows and a remainder), relative
/// to the largest output. Native tests and the browser tests both check it:
/// in the browser the simd128 path runs.
pub fn parity_with_candle() -> Result<f32> {
    use candle_core::Module;
    let weights = QTensor::quantize(&probe_matrix(74, 576, 1)?, GgmlDType::Q8_0)?;
    let ours = Q8Matrix::from_qtensor(&weights)?.expect("a Q8_0 tensor");
    let theirs = candle_core::quantized::QMatMul::from_qtensor(weights)?;
    let mut worst = 0f32;
    for rows in [1, 7, 19] {
        let x = probe_matrix(rows, 576, 2 + rows as u32)?.reshape((1, rows, 576))?;
        let (a, b) = (ours.forward(&x)?, theirs.forward(&x)?);
        if a.dims() != b.dims() {
            candle_core::bail!("shape {:?} vs candle's {:?}", a.dims(), b.dims());
        }
        let (a, b): (Vec<f32>, Vec<f32>) = (a.flatten_all()?.to_vec1()?, b.flatten_all()?.to_vec1()?);
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        worst = worst.max(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale);
    }
    Ok(worst)
}

/// candle rounds the activations' scales to f16, this kernel keeps f32.
pub const PARITY_TOLERANCE: f32 = 2e-3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_candles_q8_0_matmul_on_prompts_and_single_tokens() {
        let worst = parity_with_candle().unwrap();
        assert!(worst <= PARITY_TOLERANCE, "worst relative difference {worst}");
    }

    #[test]
    fn dequantizes_to_the_same_weights_as_candle() {
        let weights = QTensor::quantize(&probe_matrix(8, 64, 3).unwrap(), GgmlDType::Q8_0).unwrap();
        let ours = Q8Matrix::from_qtensor(&weights).unwrap().unwrap().dequantize().unwrap();
        let theirs = weights.dequantize(&Device::Cpu).unwrap();
        assert_eq!(ours.to_vec2::<f32>().unwrap(), theirs.to_vec2::<f32>().unwrap());
        assert!(Q8Matrix::from_qtensor(&QTensor::quantize(&probe_matrix(8, 64, 3).unwrap(), GgmlDType::Q4_0).unwrap()).unwrap().is_none());
    }
}
