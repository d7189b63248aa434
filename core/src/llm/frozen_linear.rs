//! A linear layer whose weight is frozen, for LoRA training. candle's matmul
//! backward always computes the gradient of both operands, so a plain
//! `x.matmul(w.t())` spends a second large matmul per projection on a weight
//! gradient that is thrown away; this op returns only the input's gradient.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// `y = x W^T` for `x` of shape (..., in) and `W` of shape (out, in).
pub struct FrozenLinear {
    pub weight: Tensor,
}

impl FrozenLinear {
    pub fn forward(weight: &Tensor, x: &Tensor) -> Result<Tensor> {
        x.apply_op1(FrozenLinear { weight: weight.clone() })
    }

    fn matmul_rows(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inputs = dims[dims.len() - 1];
        let rows = x.elem_count() / inputs;
        let y = x.reshape((rows, inputs))?.matmul(&self.weight.t()?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("x has a last dimension") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        // The op sees raw storage; wrap the input as a tensor (one copy, small
        // next to the matmul) so candle's own gemm does the work.
        let values = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((start, end))) => v[start..end].to_vec(),
            _ => candle_core::bail!("frozen-linear takes a contiguous f32 input"),
        };
        let x = Tensor::from_vec(values, layout.shape(), &candle_core::Device::Cpu)?;
        let y = self.matmul_rows(&x)?.contiguous()?;
        let shape = y.shape().clone();
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                let (start, end) = layout.contiguous_offsets().expect("made contiguous above");
                Ok((CpuStorage::F32(v[start..end].to_vec()), shape))
            }
            _ => candle_core::bail!("frozen-linear runs on the CPU in f32"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        let dims = grad_y.dims().to_vec();
        let outputs = dims[dims.len() - 1];
        let rows = grad_y.elem_count() / outputs;
        let grad_x = grad_y.reshape((rows, outputs))?.matmul(&self.weight)?;
        let mut in_dims = dims;
        *in_dims.last_mut().expect("grad has a last dimension") = self.weight.dim(1)?;
        Ok(Some(grad_x.reshape(in_dims)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::FrozenLinear;

    #[test]
    fn matches_a_plain_matmul_forward_and_backward_and_leaves_the_weight_without_gradient() {
        let device = Device::Cpu;
        let weight = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 3), &device).unwrap()).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 4, 3), &device).unwrap()).unwrap();
        let frozen = FrozenLinear::forward(weight.as_tensor(), x.as_tensor()).unwrap();
        let plain = x.as_tensor().broadcast_matmul(&weight.as_tensor().t().unwrap()).unwrap();
        assert_eq!(frozen.dims(), &[1, 4, 5]);
        let forward_gap = (&frozen - &plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(forward_gap < 1e-6, "{forward_gap}");
        // A loss that weighs each output differently, so the gradient is not uniform.
        let weights = Tensor::arange(0f32, 20.0, &device).unwrap().reshape((1, 4, 5)).unwrap();
        let frozen_grads = (frozen * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let plain_grads = (plain * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (frozen_grads.get(x.as_tensor()).unwrap(), plain_grads.get(x.as_tensor()).unwrap());
        let backward_gap = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(backward_gap < 1e-4, "{backward_gap}");
        assert!(frozen_grads.get(weight.as_tensor()).is_none(), "the frozen weight gets no gradient");
        assert!(plain_grads.get(weight.as_tensor()).is_some());
    }
}
