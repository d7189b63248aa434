//! The world model's forward pass and Gaussian draws on WebGPU, with our own
//! WGSL kernels (`linear.wgsl`, `gru_cell.wgsl`, `sample.wgsl`) through
//! `wgpu`. It drives the same [`Rollout`] as the candle CPU path, so the two
//! differ only in arithmetic; `tests/in_worker.rs` holds them to 1e-4.
//!
//! Per simulated step and member the GPU runs: the layer-1 and outcome GRU
//! input projections for all new steps at once (the context at the first
//! simulated step, one simulated step after that), then for each new step
//! the recurrent projections and the three GRU cells, then the heads and the
//! Gaussian draws (whether a value stays instead is decided by the shared
//! [`Rollout`] from the stay logits, so both paths decide it alike). The hidden states stay on the GPU between steps. Everything for one
//! step is one command buffer with one readback; bind groups are built once
//! per request shape and reused every step.

use std::collections::HashMap;

use candle_core::Device;
use sepsis_core::simulation::{SimulateRequest, Simulation, SimulationStep};
use sepsis_core::world_model::card::ModelCard;
use sepsis_core::world_model::model::LOG_SIGMA_RANGE;
use sepsis_core::world_model::simulate::{MemberOutput, Rollout};
use wgpu::util::DeviceExt;

use crate::gpu::{read_buffer, GpuContext, WORKGROUP};

/// A linear layer's weights on the GPU (`outputs x inputs`, row-major).
struct Linear {
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    inputs: u32,
    outputs: u32,
}

struct Gru {
    ih: Linear,
    hh: Linear,
    hidden: u32,
}

struct MemberWeights {
    gru1: Gru,
    gru2: Gru,
    outcome_gru: Gru,
    stay_logit: Linear,
    mean: Linear,
    log_sigma: Linear,
    outcome: Linear,
}

/// The ensemble's weights, uploaded once.
pub struct GpuWorldModel {
    members: Vec<MemberWeights>,
}

impl GpuWorldModel {
    /// Upload every member's weights from the shipped safetensors bytes.
    pub fn upload(gpu: &GpuContext, safetensors: &[u8], card: &ModelCard) -> Result<Self, String> {
        let tensors = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu).map_err(|e| format!("world-model weights: {e}"))?;
        let members = (0..card.config.members).map(|k| MemberWeights::upload(gpu, &tensors, &format!("member{k}"))).collect::<Result<_, _>>()?;
        Ok(Self { members })
    }
}

impl MemberWeights {
    fn upload(gpu: &GpuContext, tensors: &HashMap<String, candle_core::Tensor>, prefix: &str) -> Result<Self, String> {
        let linear = |name: &str, weight: &str, bias: &str| -> Result<Linear, String> {
            let get = |key: String| tensors.get(&key).ok_or_else(|| format!("world-model weights lack {key}"));
            let w = get(format!("{prefix}.{name}.{weight}"))?;
            let b = get(format!("{prefix}.{name}.{bias}"))?;
            let (outputs, inputs) = w.dims2().map_err(|e| e.to_string())?;
            let data = |t: &candle_core::Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string());
            Ok(Linear { w: storage(gpu, &data(w)?), b: storage(gpu, &data(b)?), inputs: inputs as u32, outputs: outputs as u32 })
        };
        let gru = |name: &str| -> Result<Gru, String> {
            let ih = linear(name, "weight_ih_l0", "bias_ih_l0")?;
            let hh = linear(name, "weight_hh_l0", "bias_hh_l0")?;
            let hidden = hh.inputs;
            Ok(Gru { ih, hh, hidden })
        };
        Ok(Self {
            gru1: gru("gru1")?,
            gru2: gru("gru2")?,
            outcome_gru: gru("outcome_gru")?,
            stay_logit: linear("stay_logit", "weight", "bias")?,
            mean: linear("mean", "weight", "bias")?,
            log_sigma: linear("log_sigma", "weight", "bias")?,
            outcome: linear("outcome", "weight", "bias")?,
        })
    }
}

fn storage(gpu: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(data),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    })
}

fn scratch(gpu: &GpuContext, floats: usize) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (floats.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn uniform(gpu: &GpuContext, words: &[u32]) -> wgpu::Buffer {
    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(words),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// Values read back per row and feature: stay logit, mean, log sigma, draw.
const PER_VALUE_OUTPUTS: usize = 4;

/// One kernel launch, ready to record.
struct Dispatch {
    kind: Kernel,
    bind_group: wgpu::BindGroup,
    invocations: u32,
}

#[derive(Clone, Copy)]
enum Kernel {
    Linear,
    GruCell,
    Sample,
}

impl Kernel {
    fn pipeline(self, gpu: &GpuContext) -> &wgpu::ComputePipeline {
        match self {
            Kernel::Linear => &gpu.linear,
            Kernel::GruCell => &gpu.gru_cell,
            Kernel::Sample => &gpu.sample,
        }
    }
}

/// One member's buffers and launches for a request shape.
struct MemberPlan {
    /// `rows x context x input`, read at the first simulated step.
    context_input: wgpu::Buffer,
    /// `rows x input`, read at every later step.
    step_input: wgpu::Buffer,
    /// Hidden states, zeroed before the context is read.
    hidden: [wgpu::Buffer; 3],
    stay_logit: wgpu::Buffer,
    mean: wgpu::Buffer,
    log_sigma: wgpu::Buffer,
    draws: wgpu::Buffer,
    outcome: wgpu::Buffer,
    sample_params: wgpu::Buffer,
    /// Launches that read the context, and those that read one step.
    context_dispatches: Vec<Dispatch>,
    step_dispatches: Vec<Dispatch>,
}

/// Buffers and bind groups for simulating `rows` rollouts per member.
pub struct StepPlan {
    rows: usize,
    dynamic: usize,
    members: Vec<MemberPlan>,
    readback: wgpu::Buffer,
}

impl StepPlan {
    pub fn new(gpu: &GpuContext, model: &GpuWorldModel, rows: usize, context: usize) -> Self {
        let members: Vec<MemberPlan> = model.members.iter().map(|m| MemberPlan::new(gpu, m, rows, context)).collect();
        let dynamic = model.members[0].mean.outputs as usize;
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("simulation readback"),
            size: (members.len() * rows * (PER_VALUE_OUTPUTS * dynamic + 1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { rows, dynamic, members, readback }
    }

    /// Every member's outputs and draws for the rollout's next step.
    pub async fn run(&self, gpu: &GpuContext, rollout: &Rollout<'_>) -> Result<(Vec<MemberOutput>, Vec<Vec<f32>>), String> {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("simulation step") });
        let first = rollout.steps_done() == 0;
        for (m, plan) in self.members.iter().enumerate() {
            let input = if first { &plan.context_input } else { &plan.step_input };
            gpu.queue.write_buffer(input, 0, bytemuck::cast_slice(&rollout.expanded_inputs(m)));
            let (low, high) = (LOG_SIGMA_RANGE.0 as f32, LOG_SIGMA_RANGE.1 as f32);
            let params = [(self.rows * self.dynamic) as u32, rollout.seed(), rollout.counter_base(m), 0, low.to_bits(), high.to_bits(), 0, 0];
            gpu.queue.write_buffer(&plan.sample_params, 0, bytemuck::cast_slice(&params));
            if first {
                for h in &plan.hidden {
                    encoder.clear_buffer(h, 0, None);
                }
            }
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("member"), timestamp_writes: None });
                for d in if first { &plan.context_dispatches } else { &plan.step_dispatches } {
                    pass.set_pipeline(d.kind.pipeline(gpu));
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    pass.dispatch_workgroups(d.invocations.div_ceil(WORKGROUP), 1, 1);
                }
            }
        }
        // Read back [stay logit | mean | log sigma | draws] per member, then all outcomes.
        let block = (self.rows * self.dynamic * 4) as u64;
        let mut offset = 0;
        for plan in &self.members {
            for buffer in [&plan.stay_logit, &plan.mean, &plan.log_sigma, &plan.draws] {
                encoder.copy_buffer_to_buffer(buffer, 0, &self.readback, offset, block);
                offset += block;
            }
        }
        for plan in &self.members {
            encoder.copy_buffer_to_buffer(&plan.outcome, 0, &self.readback, offset, (self.rows * 4) as u64);
            offset += (self.rows * 4) as u64;
        }
        gpu.queue.submit([encoder.finish()]);
        let values = read_buffer(&self.readback).await?;
        let n = self.rows * self.dynamic;
        let mut outputs = Vec::with_capacity(self.members.len());
        let mut draws = Vec::with_capacity(self.members.len());
        let outcomes_at = self.members.len() * PER_VALUE_OUTPUTS * n;
        for m in 0..self.members.len() {
            let block = |i: usize| values[(m * PER_VALUE_OUTPUTS + i) * n..(m * PER_VALUE_OUTPUTS + i + 1) * n].to_vec();
            let outcome_logit = values[outcomes_at + m * self.rows..outcomes_at + (m + 1) * self.rows].to_vec();
            outputs.push(MemberOutput { stay_logit: block(0), mean: block(1), log_sigma: block(2), outcome_logit });
            draws.push(block(3));
        }
        Ok((outputs, draws))
    }
}

impl MemberPlan {
    fn new(gpu: &GpuContext, weights: &MemberWeights, rows: usize, context: usize) -> Self {
        let (h1, h2, ho) = (weights.gru1.hidden as usize, weights.gru2.hidden as usize, weights.outcome_gru.hidden as usize);
        let input_dim = weights.gru1.ih.inputs as usize;
        let dynamic = weights.mean.outputs as usize;
        let (context_input, step_input) = (scratch(gpu, rows * context * input_dim), scratch(gpu, rows * input_dim));
        // Input projections of every new step: (rows * steps) x 3H.
        let (gi1, gio) = (scratch(gpu, rows * context * 3 * h1), scratch(gpu, rows * context * 3 * ho));
        let (gh1, gi2, gh2, gho) = (scratch(gpu, rows * 3 * h1), scratch(gpu, rows * 3 * h2), scratch(gpu, rows * 3 * h2), scratch(gpu, rows * 3 * ho));
        let hidden = [scratch(gpu, rows * h1), scratch(gpu, rows * h2), scratch(gpu, rows * ho)];
        let per_value = || scratch(gpu, rows * dynamic);
        let (stay_logit, mean, log_sigma, draws, outcome) = (per_value(), per_value(), per_value(), per_value(), scratch(gpu, rows));
        let sample_params = uniform(gpu, &[0; 8]);

        let bind = |kind: Kernel, buffers: &[&wgpu::Buffer]| {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &kind.pipeline(gpu).get_bind_group_layout(0),
                entries: &buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                    .collect::<Vec<_>>(),
            })
        };
        let linear = |layer: &Linear, x: &wgpu::Buffer, y: &wgpu::Buffer, batch: usize| {
            let dims = uniform(gpu, &[batch as u32, layer.inputs, layer.outputs, 0]);
            Dispatch { kind: Kernel::Linear, bind_group: bind(Kernel::Linear, &[&dims, x, &layer.w, &layer.b, y]), invocations: batch as u32 * layer.outputs }
        };
        let cell = |gru: &Gru, gi: &wgpu::Buffer, gi_stride: usize, gi_offset: usize, gh: &wgpu::Buffer, h: &wgpu::Buffer| {
            let dims = uniform(gpu, &[rows as u32, gru.hidden, gi_stride as u32, gi_offset as u32]);
            Dispatch { kind: Kernel::GruCell, bind_group: bind(Kernel::GruCell, &[&dims, gi, gh, h]), invocations: rows as u32 * gru.hidden }
        };
        let w = weights;
        // Read `steps` new steps from `input`, then predict and draw.
        let launches = |input: &wgpu::Buffer, steps: usize| {
            let mut list = vec![linear(&w.gru1.ih, input, &gi1, rows * steps), linear(&w.outcome_gru.ih, input, &gio, rows * steps)];
            for t in 0..steps {
                list.push(linear(&w.gru1.hh, &hidden[0], &gh1, rows));
                list.push(cell(&w.gru1, &gi1, steps * 3 * h1, t * 3 * h1, &gh1, &hidden[0]));
                list.push(linear(&w.gru2.ih, &hidden[0], &gi2, rows));
                list.push(linear(&w.gru2.hh, &hidden[1], &gh2, rows));
                list.push(cell(&w.gru2, &gi2, 3 * h2, 0, &gh2, &hidden[1]));
                list.push(linear(&w.outcome_gru.hh, &hidden[2], &gho, rows));
                list.push(cell(&w.outcome_gru, &gio, steps * 3 * ho, t * 3 * ho, &gho, &hidden[2]));
            }
            list.push(linear(&w.stay_logit, &hidden[1], &stay_logit, rows));
            list.push(linear(&w.mean, &hidden[1], &mean, rows));
            list.push(linear(&w.log_sigma, &hidden[1], &log_sigma, rows));
            list.push(linear(&w.outcome, &hidden[2], &outcome, rows));
            list.push(Dispatch {
                kind: Kernel::Sample,
                bind_group: bind(Kernel::Sample, &[&sample_params, &mean, &log_sigma, &draws]),
                invocations: (rows * dynamic) as u32,
            });
            list
        };
        let (context_dispatches, step_dispatches) = (launches(&context_input, context), launches(&step_input, 1));
        Self { context_input, step_input, hidden, stay_logit, mean, log_sigma, draws, outcome, sample_params, context_dispatches, step_dispatches }
    }
}

/// Run a whole simulation on the GPU, calling `on_step` as each step completes.
pub async fn simulate_on_gpu(
    gpu: &GpuContext,
    model: &GpuWorldModel,
    card: &ModelCard,
    request: SimulateRequest,
    mut on_step: impl FnMut(&SimulationStep),
) -> Result<Simulation, String> {
    let mut rollout = Rollout::new(card, request).map_err(|e| e.to_string())?;
    let plan = StepPlan::new(gpu, model, rollout.rows(), rollout.steps());
    while !rollout.is_done() {
        let (outputs, draws) = plan.run(gpu, &rollout).await?;
        on_step(rollout.advance(&outputs, &draws));
    }
    Ok(rollout.finish())
}
