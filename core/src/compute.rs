//! Compute backends: what the worker found and chose, and the fixed parity
//! problem it uses to decide whether a WebGPU adapter computes correctly.
//!
//! The parity problem is a batched linear layer, `y = x Wᵀ + b`, the building
//! block of the world model's forward pass. The worker runs it through its own
//! WGSL kernel and through candle on the CPU ([`LinearProblem::reference`]) and
//! only chooses WebGPU when both agree within [`PARITY_TOLERANCE`].

use serde::{Deserialize, Serialize};

/// Maximum absolute difference allowed between the WebGPU and CPU results.
/// Different summation orders in f32 over 64 terms of magnitude <= 1 stay
/// well below this.
pub const PARITY_TOLERANCE: f32 = 1e-5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendKind {
    WebGpu,
    /// The worker's baseline wasm SIMD build.
    Cpu,
    /// The worker's relaxed-SIMD build (fused multiply-add in the world
    /// model's matmuls), which browsers that support it load
    /// (public/worker_loader.js).
    CpuRelaxedSimd,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    pub chosen: BackendKind,
    /// Why this backend was chosen (or why WebGPU was not).
    pub reason: String,
    /// The adapter, when `navigator.gpu` offered one.
    pub adapter: Option<AdapterSummary>,
    /// The WGSL-vs-CPU parity check, when it could run.
    pub kernel_check: Option<KernelCheck>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterSummary {
    pub vendor: String,
    pub architecture: String,
    pub device: String,
    pub description: String,
    pub is_fallback: bool,
    pub shader_f16: bool,
    pub limits: GpuLimits,
}

/// The limits that bound our kernels' buffer sizes and workgroup shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroup_storage_size: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelCheck {
    pub kernel: String,
    pub elements: usize,
    pub max_abs_diff: f32,
    pub tolerance: f32,
    pub passed: bool,
}

impl BackendKind {
    /// The CPU path of the build that is running.
    pub const fn cpu() -> Self {
        if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) { BackendKind::CpuRelaxedSimd } else { BackendKind::Cpu }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::WebGpu => "WebGPU",
            BackendKind::Cpu => "CPU (wasm SIMD)",
            BackendKind::CpuRelaxedSimd => "CPU (wasm relaxed SIMD)",
        }
    }
}

impl BackendReport {
    pub fn cpu(reason: impl Into<String>) -> Self {
        Self { chosen: BackendKind::cpu(), reason: reason.into(), adapter: None, kernel_check: None }
    }

    /// The short label the UI shows, e.g. "WebGPU (SwiftShader)" or "CPU (wasm SIMD)".
    pub fn label(&self) -> String {
        match (self.chosen, &self.adapter) {
            (BackendKind::WebGpu, Some(adapter)) => format!("{} ({})", BackendKind::WebGpu.name(), adapter.display_name()),
            (kind, _) => kind.name().to_string(),
        }
    }
}

impl AdapterSummary {
    /// The most specific non-empty name the browser exposes (browsers often
    /// blank some fields for privacy).
    pub fn display_name(&self) -> String {
        if !self.description.is_empty() {
            return self.description.clone();
        }
        let parts: Vec<&str> =
            [&self.vendor, &self.architecture, &self.device].into_iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        if parts.is_empty() { "unnamed adapter".to_string() } else { parts.join(" ") }
    }
}

/// A batched linear layer with fixed, reproducible inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearProblem {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
    /// `batch x inputs`, row-major.
    pub x: Vec<f32>,
    /// `outputs x inputs`, row-major (the PyTorch / candle-nn `Linear` layout).
    pub w: Vec<f32>,
    /// `outputs`.
    pub b: Vec<f32>,
}

impl LinearProblem {
    /// The problem the backend probe runs: deterministic values in [-1, 1).
    pub fn probe() -> Self {
        let (batch, inputs, outputs) = (8, 64, 32);
        let mut next = uniform_sequence(0x5eb5_15);
        Self {
            batch,
            inputs,
            outputs,
            x: (0..batch * inputs).map(|_| next()).collect(),
            w: (0..outputs * inputs).map(|_| next()).collect(),
            b: (0..outputs).map(|_| next()).collect(),
        }
    }

    /// Plain-loop result, independent of candle; used to test the candle
    /// reference and readable as the definition of the kernel.
    pub fn naive(&self) -> Vec<f32> {
        let mut y = vec![0.0; self.batch * self.outputs];
        for r in 0..self.batch {
            for o in 0..self.outputs {
                let row = &self.w[o * self.inputs..(o + 1) * self.inputs];
                let xs = &self.x[r * self.inputs..(r + 1) * self.inputs];
                y[r * self.outputs + o] = self.b[o] + row.iter().zip(xs).map(|(w, x)| w * x).sum::<f32>();
            }
        }
        y
    }

    /// The CPU result with candle, as the worker's CPU backend computes it.
    #[cfg(feature = "ml")]
    pub fn reference(&self) -> candle_core::Result<Vec<f32>> {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let x = Tensor::from_slice(&self.x, (self.batch, self.inputs), &dev)?;
        let w = Tensor::from_slice(&self.w, (self.outputs, self.inputs), &dev)?;
        let b = Tensor::from_slice(&self.b, self.outputs, &dev)?;
        x.matmul(&w.t()?)?.broadcast_add(&b)?.flatten_all()?.to_vec1()
    }
}

/// Largest absolute element-wise difference (infinite when lengths differ or
/// a value is not finite, so a broken result can never pass).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| if x.is_finite() && y.is_finite() { (x - y).abs() } else { f32::INFINITY })
        .fold(0.0, f32::max)
}

/// xorshift32 mapped to [-1, 1): tiny, deterministic on every platform.
fn uniform_sequence(seed: u32) -> impl FnMut() -> f32 {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_inputs_are_deterministic_and_in_range() {
        let a = LinearProblem::probe();
        assert_eq!(a, LinearProblem::probe());
        assert!(a.x.iter().chain(&a.w).chain(&a.b).all(|v| (-1.0..1.0).contains(v)));
        assert!(a.x.iter().any(|v| *v < -0.5) && a.x.iter().any(|v| *v > 0.5));
    }

    #[cfg(feature = "ml")]
    #[test]
    fn candle_reference_matches_the_plain_loop() {
        let p = LinearProblem::probe();
        let diff = max_abs_diff(&p.reference().unwrap(), &p.naive());
        assert!(diff < PARITY_TOLERANCE, "diff {diff}");
    }

    #[test]
    fn max_abs_diff_never_passes_broken_results() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, 2.5]), 0.5);
        assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f32::INFINITY);
        assert_eq!(max_abs_diff(&[f32::NAN], &[f32::NAN]), f32::INFINITY);
    }

    #[test]
    fn labels_name_the_backend() {
        assert_eq!(BackendReport::cpu("no adapter").label(), "CPU (wasm SIMD)");
        let adapter = AdapterSummary {
            vendor: "google".into(),
            architecture: "swiftshader".into(),
            device: String::new(),
            description: String::new(),
            is_fallback: true,
            shader_f16: false,
            limits: GpuLimits {
                max_buffer_size: 1,
                max_storage_buffer_binding_size: 1,
                max_storage_buffers_per_shader_stage: 8,
                max_compute_invocations_per_workgroup: 256,
                max_compute_workgroup_size_x: 256,
                max_compute_workgroup_storage_size: 16384,
            },
        };
        let report = BackendReport { chosen: BackendKind::WebGpu, reason: "ok".into(), adapter: Some(adapter), kernel_check: None };
        assert_eq!(report.label(), "WebGPU (google swiftshader)");
    }
}
