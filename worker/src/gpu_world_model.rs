//! The world model's forward pass and Gaussian draws on WebGPU, with our own
//! WGSL kernels (`linear.wgsl`, `gru_cell.wgsl`, `sample.wgsl`) through
//! `wgpu`. It drives the same [`Rollout`] as the candle CPU path, so the two
//! differ only in arithmetic; `tests/in_worker.rs` holds them to 1e-4.
//!
//! Every buffer holds the whole ensemble, member after member, and every
//! launch computes all members at once: a step's work is small for a GPU,
//! so it pays to launch few, wide kernels (on an H200, stacking the members
//! and tiling the linear kernel took a sweep from 31 to 18.5 ms;
//! docs/benchmarks-gpu.md). Per simulated step
//! the GPU runs: the layer-1 and outcome GRU input projections for all new
//! steps at once (the context at the first simulated step, one simulated
//! step after that), then for each new step the recurrent projections and
//! the three GRU cells, then the heads and the Gaussian draws (whether a
//! value stays instead is decided by the shared [`Rollout`] from the stay
//! logits, so both paths decide it alike). The hidden states stay on the GPU
//! between steps. Everything for one step is one command buffer with one
//! readback; bind groups are built once per request shape and reused every
//! step.

use std::cell::RefCell;

use candle_core::Device;
use sepsis_core::simulation::{SimulateRequest, Simulation, SimulationStep};
use sepsis_core::world_model::card::ModelCard;
use sepsis_core::world_model::model::LOG_SIGMA_RANGE;
use sepsis_core::world_model::simulate::{MemberOutput, Rollout};
use wgpu::util::DeviceExt;

use crate::gpu::{linear_workgroups, read_buffer, GpuContext, WORKGROUP};

/// One layer of every member, stacked member after member
/// (`members x outputs x inputs` weights, row-major), so that one launch
/// computes the layer for the whole ensemble.
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

/// The ensemble's weights, uploaded once. Every member has the same shapes
/// (one config), which is what lets the layers stack.
pub struct GpuWorldModel {
    members: usize,
    /// Plans of recent request shapes, kept for the next request of the same
    /// shape: building one makes about a hundred buffers and bind groups.
    plans: RefCell<Vec<StepPlan>>,
    gru1: Gru,
    gru2: Gru,
    outcome_gru: Gru,
    stay_logit: Linear,
    mean: Linear,
    log_sigma: Linear,
    outcome: Linear,
}

/// Plans kept per model. The app's requests come in a few shapes (the
/// 25-action sweep, the agent's few candidates, each history length); more
/// would only hold GPU memory.
const PLANS_KEPT: usize = 4;

impl GpuWorldModel {
    /// Upload every member's weights from the shipped safetensors bytes.
    pub fn upload(gpu: &GpuContext, safetensors: &[u8], card: &ModelCard) -> Result<Self, String> {
        let tensors = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu).map_err(|e| format!("world-model weights: {e}"))?;
        let members = card.config.members;
        let linear = |name: &str, weight: &str, bias: &str| -> Result<Linear, String> {
            let (mut w, mut b, mut shape) = (Vec::new(), Vec::new(), None);
            for k in 0..members {
                let get = |key: String| tensors.get(&key).ok_or_else(|| format!("world-model weights lack {key}"));
                let weight = get(format!("member{k}.{name}.{weight}"))?;
                let dims = weight.dims2().map_err(|e| e.to_string())?;
                if *shape.get_or_insert(dims) != dims {
                    return Err(format!("world-model weights: member{k}.{name} is {dims:?}, member0's is {:?}", shape.unwrap()));
                }
                let data = |t: &candle_core::Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string());
                w.extend(data(weight)?);
                b.extend(data(get(format!("member{k}.{name}.{bias}"))?)?);
            }
            let (outputs, inputs) = shape.ok_or("the world-model card lists no members")?;
            Ok(Linear { w: storage(gpu, &w), b: storage(gpu, &b), inputs: inputs as u32, outputs: outputs as u32 })
        };
        let gru = |name: &str| -> Result<Gru, String> {
            let ih = linear(name, "weight_ih_l0", "bias_ih_l0")?;
            let hh = linear(name, "weight_hh_l0", "bias_hh_l0")?;
            let hidden = hh.inputs;
            Ok(Gru { ih, hh, hidden })
        };
        Ok(Self {
            members,
            plans: RefCell::new(Vec::new()),
            gru1: gru("gru1")?,
            gru2: gru("gru2")?,
            outcome_gru: gru("outcome_gru")?,
            stay_logit: linear("stay_logit", "weight", "bias")?,
            mean: linear("mean", "weight", "bias")?,
            log_sigma: linear("log_sigma", "weight", "bias")?,
            outcome: linear("outcome", "weight", "bias")?,
        })
    }

    /// A plan for `rows` rollouts reading `context` steps: a kept one of that
    /// shape, else a new one. It is taken out while a simulation uses it, so
    /// two simulations at once never share buffers.
    fn take_plan(&self, gpu: &GpuContext, rows: usize, context: usize) -> StepPlan {
        let mut plans = self.plans.borrow_mut();
        match plans.iter().position(|p| (p.rows, p.context) == (rows, context)) {
            Some(i) => plans.remove(i),
            None => StepPlan::new(gpu, self, rows, context),
        }
    }

    /// Keep `plan` for the next request of its shape, the most recent first.
    fn keep_plan(&self, plan: StepPlan) {
        let mut plans = self.plans.borrow_mut();
        plans.insert(0, plan);
        plans.truncate(PLANS_KEPT);
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
    workgroups: [u32; 3],
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

/// Buffers and launches for simulating `rows` rollouts in every member.
/// Each buffer holds all members, member after member, so each launch
/// serves the whole ensemble.
pub struct StepPlan {
    rows: usize,
    context: usize,
    members: usize,
    dynamic: usize,
    /// `members x rows x context x input`, read at the first simulated step.
    context_input: wgpu::Buffer,
    /// `members x rows x input`, read at every later step.
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
    readback: wgpu::Buffer,
}

impl StepPlan {
    pub fn new(gpu: &GpuContext, model: &GpuWorldModel, rows: usize, context: usize) -> Self {
        let m = model;
        let members = m.members;
        let (h1, h2, ho) = (m.gru1.hidden as usize, m.gru2.hidden as usize, m.outcome_gru.hidden as usize);
        let input_dim = m.gru1.ih.inputs as usize;
        let dynamic = m.mean.outputs as usize;
        let all = |floats_per_member: usize| scratch(gpu, members * floats_per_member);
        let (context_input, step_input) = (all(rows * context * input_dim), all(rows * input_dim));
        // Input projections of every new step: (rows * steps) x 3H per member.
        let (gi1, gio) = (all(rows * context * 3 * h1), all(rows * context * 3 * ho));
        let (gh1, gi2, gh2, gho) = (all(rows * 3 * h1), all(rows * 3 * h2), all(rows * 3 * h2), all(rows * 3 * ho));
        let hidden = [all(rows * h1), all(rows * h2), all(rows * ho)];
        let per_value = || all(rows * dynamic);
        let (stay_logit, mean, log_sigma, draws, outcome) = (per_value(), per_value(), per_value(), per_value(), all(rows));
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
        let element_wise = |count: usize| [(count as u32).div_ceil(WORKGROUP), 1, 1];
        let linear = |layer: &Linear, x: &wgpu::Buffer, y: &wgpu::Buffer, batch: usize| {
            let dims = uniform(gpu, &[batch as u32, layer.inputs, layer.outputs, 0]);
            Dispatch {
                kind: Kernel::Linear,
                bind_group: bind(Kernel::Linear, &[&dims, x, &layer.w, &layer.b, y]),
                workgroups: linear_workgroups(batch, layer.outputs as usize, members),
            }
        };
        // The cell is element-wise, so it reads the stacked members as
        // `members * rows` rows: member k's gate rows follow member k-1's.
        let cell = |gru: &Gru, gi: &wgpu::Buffer, gi_stride: usize, gi_offset: usize, gh: &wgpu::Buffer, h: &wgpu::Buffer| {
            let all_rows = members * rows;
            let dims = uniform(gpu, &[all_rows as u32, gru.hidden, gi_stride as u32, gi_offset as u32]);
            Dispatch {
                kind: Kernel::GruCell,
                bind_group: bind(Kernel::GruCell, &[&dims, gi, gh, h]),
                workgroups: element_wise(all_rows * gru.hidden as usize),
            }
        };
        // Read `steps` new steps from `input`, then predict and draw.
        let launches = |input: &wgpu::Buffer, steps: usize| {
            let mut list = vec![linear(&m.gru1.ih, input, &gi1, rows * steps), linear(&m.outcome_gru.ih, input, &gio, rows * steps)];
            for t in 0..steps {
                list.push(linear(&m.gru1.hh, &hidden[0], &gh1, rows));
                list.push(cell(&m.gru1, &gi1, steps * 3 * h1, t * 3 * h1, &gh1, &hidden[0]));
                list.push(linear(&m.gru2.ih, &hidden[0], &gi2, rows));
                list.push(linear(&m.gru2.hh, &hidden[1], &gh2, rows));
                list.push(cell(&m.gru2, &gi2, 3 * h2, 0, &gh2, &hidden[1]));
                list.push(linear(&m.outcome_gru.hh, &hidden[2], &gho, rows));
                list.push(cell(&m.outcome_gru, &gio, steps * 3 * ho, t * 3 * ho, &gho, &hidden[2]));
            }
            list.push(linear(&m.stay_logit, &hidden[1], &stay_logit, rows));
            list.push(linear(&m.mean, &hidden[1], &mean, rows));
            list.push(linear(&m.log_sigma, &hidden[1], &log_sigma, rows));
            list.push(linear(&m.outcome, &hidden[2], &outcome, rows));
            list.push(Dispatch {
                kind: Kernel::Sample,
                bind_group: bind(Kernel::Sample, &[&sample_params, &mean, &log_sigma, &draws]),
                workgroups: element_wise(members * rows * dynamic),
            });
            list
        };
        let (context_dispatches, step_dispatches) = (launches(&context_input, context), launches(&step_input, 1));
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("simulation readback"),
            size: (members * rows * (PER_VALUE_OUTPUTS * dynamic + 1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            rows,
            context,
            members,
            dynamic,
            context_input,
            step_input,
            hidden,
            stay_logit,
            mean,
            log_sigma,
            draws,
            outcome,
            sample_params,
            context_dispatches,
            step_dispatches,
            readback,
        }
    }

    /// Every member's outputs and draws for the rollout's next step.
    pub async fn run(&self, gpu: &GpuContext, rollout: &Rollout<'_>) -> Result<(Vec<MemberOutput>, Vec<Vec<f32>>), String> {
        let first = rollout.steps_done() == 0;
        let input = if first { &self.context_input } else { &self.step_input };
        let mut offset = 0;
        for m in 0..self.members {
            let inputs = rollout.expanded_inputs(m);
            gpu.queue.write_buffer(input, offset, bytemuck::cast_slice(&inputs));
            offset += (inputs.len() * 4) as u64;
        }
        // Member k's draws continue member k-1's counters (Rollout::counter_base),
        // so one launch over the stacked members draws what the CPU draws.
        let (low, high) = (LOG_SIGMA_RANGE.0 as f32, LOG_SIGMA_RANGE.1 as f32);
        let count = (self.members * self.rows * self.dynamic) as u32;
        let params = [count, rollout.seed(), rollout.counter_base(0), 0, low.to_bits(), high.to_bits(), 0, 0];
        gpu.queue.write_buffer(&self.sample_params, 0, bytemuck::cast_slice(&params));

        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("simulation step") });
        if first {
            for h in &self.hidden {
                encoder.clear_buffer(h, 0, None);
            }
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ensemble"), timestamp_writes: None });
            for d in if first { &self.context_dispatches } else { &self.step_dispatches } {
                pass.set_pipeline(d.kind.pipeline(gpu));
                pass.set_bind_group(0, &d.bind_group, &[]);
                let [x, y, z] = d.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        // Read back [stay logit | mean | log sigma | draws | outcome], each for all members.
        let mut offset = 0;
        for buffer in [&self.stay_logit, &self.mean, &self.log_sigma, &self.draws, &self.outcome] {
            encoder.copy_buffer_to_buffer(buffer, 0, &self.readback, offset, buffer.size());
            offset += buffer.size();
        }
        gpu.queue.submit([encoder.finish()]);
        let values = read_buffer(&gpu.device, &self.readback).await?;
        let n = self.rows * self.dynamic;
        let block = |i: usize, m: usize| {
            let start = i * self.members * n + m * n;
            values[start..start + n].to_vec()
        };
        let outcomes_at = PER_VALUE_OUTPUTS * self.members * n;
        let outputs = (0..self.members)
            .map(|m| MemberOutput {
                stay_logit: block(0, m),
                mean: block(1, m),
                log_sigma: block(2, m),
                outcome_logit: values[outcomes_at + m * self.rows..outcomes_at + (m + 1) * self.rows].to_vec(),
            })
            .collect();
        let draws = (0..self.members).map(|m| block(3, m)).collect();
        Ok((outputs, draws))
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
    let plan = model.take_plan(gpu, rollout.rows(), rollout.steps());
    // Every buffer a step reads is written before it is read (inputs and
    // parameters each step, hidden states cleared at the first), so a kept
    // plan starts clean.
    while !rollout.is_done() {
        let (outputs, draws) = plan.run(gpu, &rollout).await?;
        on_step(rollout.advance(&outputs, &draws));
    }
    model.keep_plan(plan);
    Ok(rollout.finish())
}
