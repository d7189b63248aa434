//! The LLM's Q8_0 projections, written for the browser's CPU path first and
//! used natively too. candle's Q8_0 matmul stores every 32-value block's
//! scale as f16 and converts both the weight's and the activation's scale
//! for each block product; wasm has no f16 instructions, so those
//! conversions cost about as much as the integer dot product itself. Here
//! the weights are repacked once at load into i8 quants and f32 scales, in
//! tiles of COLS rows; activations are quantized as GGML does (per 32
//! values, scale = max |x| / 127 rounded to f16); in the browser two token
//! rows meet a tile per pass with simd128 i16 dot-adds, natively one row at
//! a time with AVX2 (detected at run time) on rayon threads. Every token
//! row meets a tile while it is in cache, so prefill reads each weight from
//! memory once, not once per token. Arithmetic: `parity_with_exact_product`.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};

/// Values per quantization block (GGML's Q8_0).
pub const BLOCK: usize = 32;
/// Bytes of a GGML Q8_0 block: an f16 scale, then 32 i8 quants.
const GGML_BLOCK_BYTES: usize = 2 + BLOCK;
/// Weight rows (outputs) taken together: they stay in cache while every
/// token row is multiplied with them.
const COLS: usize = 4;

/// A weight matrix (outputs x inputs) in Q8_0 with f32 scales, packed in
/// tiles of COLS rows so that the kernel reads memory in order: tile by
/// tile, block by block, the tile's COLS rows side by side. Decoding one
/// token streams every weight once, and one stream is what the hardware
/// prefetches best (COLS separate rows ran at half candle's speed).
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    outputs: usize,
    inputs: usize,
    /// `tiles x blocks x COLS x BLOCK`; rows past `outputs` are zero.
    quants: Vec<i8>,
    /// `tiles x blocks x COLS`.
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
            *q = round_half_away(x * inverse) as i8;
        }
        // Stored rounded to f16, as GGML and candle store it, so that the
        // products are the ones the format defines; converted once per
        // activation block, not per block product.
        scales.push(half::f16::from_f32(scale).to_f32());
    }
    Quantized { quants, scales }
}

/// `v.round()` (ties away from zero, as candle and GGML quantize) for
/// |v| <= 127, without a call: `f32::round` is a libm call both natively
/// (no SSE4.1 in the baseline target) and in wasm, and made quantizing the
/// activations a tenth of prefill. `v - trunc(v)` is exact in f32.
#[inline(always)]
fn round_half_away(v: f32) -> i32 {
    let truncated = v as i32;
    let fraction = v - truncated as f32;
    truncated + i32::from(fraction >= 0.5) - i32::from(fraction <= -0.5)
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
        let row_blocks = inputs / BLOCK;
        let tiles = outputs.div_ceil(COLS);
        let mut quants = vec![0i8; tiles * COLS * inputs];
        let mut scales = vec![0f32; tiles * COLS * row_blocks];
        for (i, block) in data.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
            let at = packed_block(i / row_blocks, i % row_blocks, row_blocks);
            scales[at] = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (q, &b) in quants[at * BLOCK..(at + 1) * BLOCK].iter_mut().zip(&block[2..]) {
                *q = b as i8;
            }
        }
        Ok(Some(Self { outputs, inputs, quants, scales }))
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The weights as f32 (outputs, inputs): what training differentiates through.
    pub fn dequantize(&self) -> Result<Tensor> {
        let row_blocks = self.inputs / BLOCK;
        let values: Vec<f32> = (0..self.outputs * row_blocks)
            .flat_map(|i| {
                let at = packed_block(i / row_blocks, i % row_blocks, row_blocks);
                let scale = self.scales[at];
                self.quants[at * BLOCK..(at + 1) * BLOCK].iter().map(move |&v| v as f32 * scale)
            })
            .collect();
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
        let (n, k) = (self.outputs, self.inputs);
        let blocks = k / BLOCK;
        // Output tile by tile (`tile[row * COLS + c]`), so that tiles are
        // disjoint slices that threads can fill natively; copied into `out`
        // COLS values at a time (single values, strided by `n`, took a
        // tenth of prefill).
        let tiles = n.div_ceil(COLS);
        let mut by_tile = vec![0f32; tiles * COLS * rows];
        let tile = |(t, chunk): (usize, &mut [f32])| {
            let wq = &self.quants[t * COLS * k..(t + 1) * COLS * k];
            let ws = &self.scales[t * COLS * blocks..(t + 1) * COLS * blocks];
            let token = |row: usize| (&x.quants[row * k..(row + 1) * k], &x.scales[row * blocks..(row + 1) * blocks]);
            for (pair, sums) in chunk.chunks_mut(2 * COLS).enumerate() {
                let row = 2 * pair;
                if sums.len() == 2 * COLS {
                    let [a, b] = dot_rows([token(row), token(row + 1)], wq, ws);
                    sums[..COLS].copy_from_slice(&a);
                    sums[COLS..].copy_from_slice(&b);
                } else {
                    sums.copy_from_slice(&dot_rows([token(row)], wq, ws)[0]);
                }
            }
        };
        // On rayon's threads natively, for products of at least 2^22
        // multiply-adds (prefill's, the output head's). Decode's small
        // products, one thread, and the browser stay on the calling thread:
        // it is not one of rayon's, so each hand-off costs two context
        // switches (a fifth of single-thread decode time in a profile).
        const PARALLEL_FROM: usize = 1 << 22;
        if cfg!(not(target_arch = "wasm32")) && rayon::current_num_threads() > 1 && rows * n * k >= PARALLEL_FROM {
            use rayon::prelude::*;
            by_tile.par_chunks_mut(COLS * rows).enumerate().for_each(tile);
        } else {
            by_tile.chunks_mut(COLS * rows).enumerate().for_each(tile);
        }
        for (t, chunk) in by_tile.chunks_exact(COLS * rows).enumerate() {
            let first = t * COLS;
            let cols = COLS.min(n - first);
            for (row, sums) in chunk.chunks_exact(COLS).enumerate() {
                out[row * n + first..row * n + first + cols].copy_from_slice(&sums[..cols]);
            }
        }
    }
}

/// Where block `block` of weight row `row` sits in the packed layout (in
/// blocks; its quants start `BLOCK` times further).
fn packed_block(row: usize, block: usize, row_blocks: usize) -> usize {
    ((row / COLS) * row_blocks + block) * COLS + row % COLS
}

/// One or two token rows (`ROWS`) against a tile of COLS weight rows (`wq`,
/// `ws` packed): for each token row and weight row, the sum over blocks of
/// (x quants . w quants) * x scale * w scale. Each weight load serves every
/// token row; a block's COLS integer sums are gathered into one vector, so
/// the scales cost one multiply per block and token row.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn dot_rows<const ROWS: usize>(x: [(&[i8], &[f32]); ROWS], wq: &[i8], ws: &[f32]) -> [[f32; COLS]; ROWS] {
    use std::arch::wasm32::*;
    /// [sum(a), sum(b), sum(c), sum(d)].
    #[inline(always)]
    fn lane_sums([a, b, c, d]: [v128; 4]) -> v128 {
        let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
        let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
    }
    const { assert!(COLS == 4, "lane_sums gathers four weight rows") };
    let mut acc = [f32x4_splat(0.0); ROWS];
    for b in 0..ws.len() / COLS {
        // SAFETY: each token row holds `ws.len() / COLS * BLOCK` quants and
        // the tile COLS times as many (the caller slices whole rows and
        // tiles); each load reads 8 of a block's 32, or its COLS scales.
        unsafe {
            let w = wq.as_ptr().add(b * COLS * BLOCK);
            let mut sums = [[i32x4_splat(0); COLS]; ROWS];
            for quarter in 0..4 {
                let xv: [v128; ROWS] = std::array::from_fn(|r| i16x8_load_extend_i8x8(x[r].0.as_ptr().add(b * BLOCK + quarter * 8)));
                for c in 0..COLS {
                    let wv = i16x8_load_extend_i8x8(w.add(c * BLOCK + quarter * 8));
                    for r in 0..ROWS {
                        sums[r][c] = i32x4_add(sums[r][c], i32x4_dot_i16x8(xv[r], wv));
                    }
                }
            }
            let scales = v128_load(ws.as_ptr().add(b * COLS) as *const v128);
            for r in 0..ROWS {
                let scale = f32x4_mul(scales, f32x4_splat(*x[r].1.get_unchecked(b)));
                acc[r] = f32x4_add(acc[r], f32x4_mul(f32x4_convert_i32x4(lane_sums(sums[r])), scale));
            }
        }
    }
    acc.map(|v| [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)])
}

/// As the simd128 kernel, natively, a token row at a time (AVX2 keeps the
/// row's block in registers while it meets the tile).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot_rows<const ROWS: usize>(x: [(&[i8], &[f32]); ROWS], wq: &[i8], ws: &[f32]) -> [[f32; COLS]; ROWS] {
    x.map(|(xq, xs)| dot_tile(xq, xs, wq, ws))
}

/// One token row against a tile: AVX2 where the CPU has it (checked once at
/// run time, so one build runs anywhere), else portable Rust.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot_tile(xq: &[i8], xs: &[f32], wq: &[i8], ws: &[f32]) -> [f32; COLS] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { dot_tile_avx2(xq, xs, wq, ws) };
    }
    std::array::from_fn(|c| {
        xq.chunks_exact(BLOCK)
            .zip(xs)
            .enumerate()
            .map(|(b, (x, &sx))| {
                let at = b * COLS + c;
                let w = &wq[at * BLOCK..(at + 1) * BLOCK];
                x.iter().zip(w).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum::<i32>() as f32 * (sx * ws[at])
            })
            .sum()
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_tile_avx2(xq: &[i8], xs: &[f32], wq: &[i8], ws: &[f32]) -> [f32; COLS] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); COLS];
    for (b, &sx) in xs.iter().enumerate() {
        // SAFETY: as in the simd128 kernel; each load reads 16 of 32 bytes.
        unsafe {
            let x = xq.as_ptr().add(b * BLOCK) as *const __m128i;
            let (x0, x1) = (_mm256_cvtepi8_epi16(_mm_loadu_si128(x)), _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(1))));
            for (c, acc) in acc.iter_mut().enumerate() {
                let w = wq.as_ptr().add((b * COLS + c) * BLOCK) as *const __m128i;
                let sum = _mm256_add_epi32(
                    _mm256_madd_epi16(x0, _mm256_cvtepi8_epi16(_mm_loadu_si128(w))),
                    _mm256_madd_epi16(x1, _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(1)))),
                );
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(sx * *ws.get_unchecked(b * COLS + c)), *acc);
            }
        }
    }
    acc.map(|a| {
        let mut lanes = [0f32; 8];
        // SAFETY: an 8-float store into an 8-float array.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        lanes.iter().sum()
    })
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

/// The largest difference between this kernel and the exact product it
/// stands for, relative to the largest output, on fixed problems: 74 x 576
/// and 20 x 1536 weights (a tile remainder, the model's two input widths)
/// against 1, 7 and 19 token rows. The reference quantizes the activations
/// with candle (f16 scales, as GGML) and multiplies the dequantized values in
/// f64, so only this kernel's sums are on trial. Native tests and the
/// browser tests both check it: in the browser the simd128 path runs.
pub fn parity_with_exact_product() -> Result<f32> {
    let mut worst = 0f32;
    for (outputs, inputs) in [(74, 576), (20, 1536)] {
        let weights = QTensor::quantize(&probe_matrix(outputs, inputs, 1)?, GgmlDType::Q8_0)?;
        let ours = Q8Matrix::from_qtensor(&weights)?.expect("a Q8_0 tensor");
        let w: Vec<Vec<f32>> = weights.dequantize(&Device::Cpu)?.to_vec2()?;
        for rows in [1, 7, 19] {
            let x = probe_matrix(rows, inputs, 2 + rows as u32)?;
            let xq: Vec<Vec<f32>> = QTensor::quantize(&x, GgmlDType::Q8_0)?.dequantize(&Device::Cpu)?.to_vec2()?;
            let got: Vec<Vec<f32>> = ours.forward(&x.reshape((1, rows, inputs))?)?.squeeze(0)?.to_vec2()?;
            let exact: Vec<Vec<f64>> = xq.iter().map(|x| w.iter().map(|w| x.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()).collect()).collect();
            let scale = exact.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
            for (g, e) in got.iter().flatten().zip(exact.iter().flatten()) {
                worst = worst.max(((f64::from(*g) - e).abs() / scale) as f32);
            }
        }
    }
    Ok(worst)
}

/// f32 sums in another order than the f64 reference.
pub const PARITY_TOLERANCE: f32 = 1e-5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_exact_product_on_prompts_and_single_tokens() {
        let worst = parity_with_exact_product().unwrap();
        assert!(worst <= PARITY_TOLERANCE, "worst relative difference {worst}");
    }

    #[test]
    fn rounds_as_f32_round_does() {
        for v in [0.0f32, 0.49999997, 0.5, -0.5, 1.5, 2.5, -2.5, 126.5, -127.0, 127.0, 3.4999998, -3.5000002, 0.7, -0.7] {
            assert_eq!(round_half_away(v), v.round() as i32, "{v}");
        }
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
