//! `out += x W^T` for the browser: the world model's projections in the
//! worker, on wasm SIMD.
//!
//! Why our own kernel: gemm's simd128 kernel ran a 400 x 128 x 384 product
//! in 1.18 ms; this one takes 0.92 ms with a multiply and an add, and
//! 0.69 ms in the worker's relaxed-SIMD build, where `f32x4.relaxed_madd` is
//! one fused multiply-add instruction (best of 100 in headless Chromium on
//! the 2-core machine: `make bench`, docs/benchmarks.md). gemm has no
//! relaxed-SIMD kernel. Relaxed SIMD is its
//! own build (`scripts/build-relaxed-worker.sh`) because a browser without it
//! refuses the whole module; the worker's loader picks the build
//! (public/worker_loader.js). "Relaxed": the last bit of a product may differ
//! between machines (fused or not), never within one, so a simulation's
//! helper workers still agree to the last bit.
//!
//! Layout: the weights are packed in panels of 12 output columns, each panel
//! `inputs x 12` contiguous (zero-padded past the last column), so a panel
//! stays in L1 while every row passes through it; a block of 3 rows x 12
//! columns keeps its 9 sums in registers, reading three weight vectors and
//! three inputs (each loaded straight into all four lanes) per step. Why
//! 3 x 12: of the blocks tried in headless Chromium (4 x 8, 6 x 8, 5 x 8,
//! 4 x 12, 3 x 16, 2 x 16, 2 x 12, 8 x 4) it was the fastest on every shape
//! the sweep uses (12 % faster than 4 x 8 on 400 x 128 x 384 with relaxed
//! SIMD); blocks of 12 or more sums ran 15-50 % slower, as V8 has 16 vector
//! registers and then spills. The sums start from the bias and full panels
//! are stored straight into the result: copying each block's sums in and
//! out through a buffer (calls to `memcpy` in wasm) had cost a fifth of the
//! browser's sweep (151 -> 108 ms with relaxed SIMD, with the other changes
//! of 2026-11-28: this block shape and the gates in wasm SIMD).
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

use core::arch::wasm32::{v128, v128_load, v128_load32_splat, v128_store};
use core::mem::MaybeUninit;

/// `a * b + c`: fused where the build has relaxed SIMD.
#[inline(always)]
pub(super) fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return core::arch::wasm32::f32x4_relaxed_madd(a, b, c);
    #[cfg(not(target_feature = "relaxed-simd"))]
    core::arch::wasm32::f32x4_add(core::arch::wasm32::f32x4_mul(a, b), c)
}

/// 4-lane vectors per panel row.
const VECTORS: usize = 3;
/// Output columns per panel.
const PANEL: usize = 4 * VECTORS;
/// Rows per block.
const BLOCK_ROWS: usize = 3;

/// A projection's weights and bias, packed for [`PackedWeights::apply`].
pub struct PackedWeights {
    panels: Vec<f32>,
    /// The bias in panels of `PANEL`, zero-padded like the weights.
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl PackedWeights {
    /// `weight_t` is `inputs x outputs`, row-major; `bias` has `outputs`.
    pub fn pack(weight_t: &[f32], bias: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs, "weights of {inputs} x {outputs}");
        assert_eq!(bias.len(), outputs, "one bias per output");
        let count = outputs.div_ceil(PANEL);
        let mut panels = vec![0.0; count * inputs * PANEL];
        for (p, panel) in panels.chunks_exact_mut(inputs * PANEL).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(outputs - first);
            for (k, lane) in panel.chunks_exact_mut(PANEL).enumerate() {
                lane[..width].copy_from_slice(&weight_t[k * outputs + first..][..width]);
            }
        }
        let mut padded = vec![0.0; count * PANEL];
        padded[..outputs].copy_from_slice(bias);
        Self { panels, bias: padded, inputs, outputs }
    }

    /// `x W^T + b` (`rows x outputs`) for `x` of `rows x inputs`. The sums
    /// start from the bias in registers and each output is written once:
    /// filling the result with the bias first cost about 4 ms of a 130 ms
    /// sweep in the browser.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let (inputs, outputs) = (self.inputs, self.outputs);
        let rows = x.len() / inputs;
        assert_eq!(x.len(), rows * inputs, "x is rows x {inputs}");
        let mut out: Vec<f32> = Vec::with_capacity(rows * outputs);
        let spare = &mut out.spare_capacity_mut()[..rows * outputs];
        for (p, panel) in self.panels.chunks_exact(inputs * PANEL).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(outputs - first);
            let bias = &self.bias[first..first + PANEL];
            let mut row = 0;
            while row + BLOCK_ROWS <= rows {
                block::<BLOCK_ROWS>(panel, bias, x, spare, row, first, width, inputs, outputs);
                row += BLOCK_ROWS;
            }
            while row < rows {
                block::<1>(panel, bias, x, spare, row, first, width, inputs, outputs);
                row += 1;
            }
        }
        // SAFETY: the panels cover every column and the blocks every row,
        // and `block` writes each of its rows' `width` columns.
        unsafe { out.set_len(rows * outputs) };
        out
    }
}

/// Rows `row .. row + R`, columns `first .. first + width` (`width <= PANEL`)
/// of `out`, written from the panel's `bias` (`PANEL` long) plus the products.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const R: usize>(panel: &[f32], bias: &[f32], x: &[f32], out: &mut [MaybeUninit<f32>], row: usize, first: usize, width: usize, inputs: usize, outputs: usize) {
    let x_rows: [&[f32]; R] = core::array::from_fn(|r| &x[(row + r) * inputs..][..inputs]);
    let out_rows: [&mut [MaybeUninit<f32>]; R] = {
        let mut rest = &mut out[row * outputs..(row + R) * outputs];
        core::array::from_fn(|_| {
            let (this, next) = core::mem::take(&mut rest).split_at_mut(outputs);
            rest = next;
            &mut this[first..first + width]
        })
    };
    assert!(panel.len() == inputs * PANEL && bias.len() == PANEL);
    // SAFETY: every load reads 4 floats inside `panel` (k < inputs, offsets
    // 0, 4 and 8 of a lane of 12) or `bias` (PANEL long), or one float of
    // `x_rows[r]` (k < inputs, its length); the stores write whole vectors
    // only into a row's `width` columns when they are the full PANEL, else
    // into `sums` first.
    unsafe {
        let mut acc: [[v128; VECTORS]; R] = [core::array::from_fn(|v| v128_load(bias.as_ptr().add(4 * v) as *const v128)); R];
        let weights = panel.as_ptr();
        for k in 0..inputs {
            let w: [v128; VECTORS] = core::array::from_fn(|v| v128_load(weights.add(k * PANEL + 4 * v) as *const v128));
            for r in 0..R {
                let xs = v128_load32_splat(x_rows[r].as_ptr().add(k) as *const u32);
                for v in 0..VECTORS {
                    acc[r][v] = madd(xs, w[v], acc[r][v]);
                }
            }
        }
        for (r, out_row) in out_rows.into_iter().enumerate() {
            if width == PANEL {
                for v in 0..VECTORS {
                    v128_store(out_row.as_mut_ptr().add(4 * v) as *mut v128, acc[r][v]);
                }
            } else {
                // A partial panel goes through a buffer, so the vector
                // stores never touch the next row's columns.
                let mut sums = [0.0f32; PANEL];
                for v in 0..VECTORS {
                    v128_store(sums.as_mut_ptr().add(4 * v) as *mut v128, acc[r][v]);
                }
                for (o, s) in out_row.iter_mut().zip(sums) {
                    o.write(s);
                }
            }
        }
    }
}
