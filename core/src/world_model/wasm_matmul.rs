//! `out += x W^T` for the browser: the world model's projections in the
//! worker, on wasm SIMD.
//!
//! Why our own kernel: gemm's simd128 kernel ran a 400 x 128 x 384 product
//! in 1.27 ms; this one takes 1.07 ms with a multiply and an add, and
//! 0.89 ms in the worker's relaxed-SIMD build, where `f32x4.relaxed_madd` is
//! one fused multiply-add instruction (best of 100 in headless Chromium on
//! the 2-core machine: `make bench`, docs/benchmarks.md). gemm has no
//! relaxed-SIMD kernel. Relaxed SIMD is its
//! own build (`scripts/build-relaxed-worker.sh`) because a browser without it
//! refuses the whole module; the worker's loader picks the build
//! (public/worker_loader.js). "Relaxed": the last bit of a product may differ
//! between machines (fused or not), never within one, so a simulation's
//! helper workers still agree to the last bit.
//!
//! Layout: the weights are packed in panels of 8 output columns, each panel
//! `inputs x 8` contiguous (zero-padded past the last column), so a panel
//! stays in L1 while every row passes through it; a block of 4 rows x 8
//! columns keeps its 8 sums in registers (enough independent multiply-adds
//! to keep two FMA units busy), reading two weight vectors and four
//! splatted inputs per step.
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

use core::arch::wasm32::{f32x4_splat, v128, v128_load, v128_store};

/// `a * b + c`: fused where the build has relaxed SIMD.
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return core::arch::wasm32::f32x4_relaxed_madd(a, b, c);
    #[cfg(not(target_feature = "relaxed-simd"))]
    core::arch::wasm32::f32x4_add(core::arch::wasm32::f32x4_mul(a, b), c)
}

/// Output columns per panel: two 4-lane vectors.
const PANEL: usize = 8;
/// Rows per block.
const BLOCK_ROWS: usize = 4;

/// A projection's weights, packed for [`PackedWeights::multiply_add`].
pub struct PackedWeights {
    panels: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl PackedWeights {
    /// `weight_t` is `inputs x outputs`, row-major.
    pub fn pack(weight_t: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs, "weights of {inputs} x {outputs}");
        let count = outputs.div_ceil(PANEL);
        let mut panels = vec![0.0; count * inputs * PANEL];
        for (p, panel) in panels.chunks_exact_mut(inputs * PANEL).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(outputs - first);
            for (k, lane) in panel.chunks_exact_mut(PANEL).enumerate() {
                lane[..width].copy_from_slice(&weight_t[k * outputs + first..][..width]);
            }
        }
        Self { panels, inputs, outputs }
    }

    /// `out` (`rows x outputs`, already holding the bias) `+= x W^T` for `x`
    /// of `rows x inputs`.
    pub fn multiply_add(&self, x: &[f32], out: &mut [f32]) {
        let (inputs, outputs) = (self.inputs, self.outputs);
        let rows = x.len() / inputs;
        assert!(x.len() == rows * inputs && out.len() == rows * outputs, "x is rows x {inputs}, out rows x {outputs}");
        for (p, panel) in self.panels.chunks_exact(inputs * PANEL).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(outputs - first);
            let mut row = 0;
            while row + BLOCK_ROWS <= rows {
                block::<BLOCK_ROWS>(panel, x, out, row, first, width, inputs, outputs);
                row += BLOCK_ROWS;
            }
            while row < rows {
                block::<1>(panel, x, out, row, first, width, inputs, outputs);
                row += 1;
            }
        }
    }
}

/// Rows `row .. row + R`, columns `first .. first + width` (`width <= 8`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const R: usize>(panel: &[f32], x: &[f32], out: &mut [f32], row: usize, first: usize, width: usize, inputs: usize, outputs: usize) {
    // Partial panels go through a buffer of 8 so the vector loads and
    // stores never touch another row's columns.
    let mut sums = [[0.0f32; PANEL]; R];
    for (r, sum) in sums.iter_mut().enumerate() {
        sum[..width].copy_from_slice(&out[(row + r) * outputs + first..][..width]);
    }
    let x_rows: [&[f32]; R] = core::array::from_fn(|r| &x[(row + r) * inputs..][..inputs]);
    assert_eq!(panel.len(), inputs * PANEL);
    // SAFETY: every load reads 4 floats inside `panel` (k < inputs, offsets
    // 0 and 4 of a lane of 8) or `sums`; `x_rows[r]` has `inputs` floats.
    unsafe {
        let mut acc: [[v128; 2]; R] = core::array::from_fn(|r| {
            [v128_load(sums[r].as_ptr() as *const v128), v128_load(sums[r].as_ptr().add(4) as *const v128)]
        });
        let weights = panel.as_ptr();
        for k in 0..inputs {
            let w0 = v128_load(weights.add(k * PANEL) as *const v128);
            let w1 = v128_load(weights.add(k * PANEL + 4) as *const v128);
            for r in 0..R {
                let xs = f32x4_splat(*x_rows[r].get_unchecked(k));
                acc[r][0] = madd(xs, w0, acc[r][0]);
                acc[r][1] = madd(xs, w1, acc[r][1]);
            }
        }
        for r in 0..R {
            v128_store(sums[r].as_mut_ptr() as *mut v128, acc[r][0]);
            v128_store(sums[r].as_mut_ptr().add(4) as *mut v128, acc[r][1]);
        }
    }
    for (r, sum) in sums.iter().enumerate() {
        out[(row + r) * outputs + first..][..width].copy_from_slice(&sum[..width]);
    }
}
