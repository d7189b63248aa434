// The Gaussian head's draw: clamp log sigma to the model's range (in place),
// then draw = mean + exp(log_sigma) * N(0, 1). The normal comes from a
// counter-based hash, the same function as sepsis_core::simulation::
// standard_normal, so the CPU path draws the same numbers.

struct Params {
    count: u32,
    seed: u32,
    counter_base: u32,
    _pad: u32,
    log_sigma_min: f32,
    log_sigma_max: f32,
    _pad2: vec2<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> log_sigma: array<f32>;
@group(0) @binding(3) var<storage, read_write> draws: array<f32>;

// PCG-RXS-M-XS 32 output permutation of one LCG step (u32 arithmetic wraps).
fn pcg_hash(input: u32) -> u32 {
    let state = input * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn unit(h: u32) -> f32 {
    return (f32(h >> 8u) + 0.5) / 16777216.0;
}

// cos(2 pi u) by the same reduction and Taylor polynomial as the CPU's
// cos_turns: the built-in cos may be off by 2^-11, too much for parity.
fn cos_turns(u: f32) -> f32 {
    let t = abs(u - 0.5);
    var angle = 6.2831855 * t;
    var sign = -1.0;
    if (t > 0.25) {
        angle = 6.2831855 * (0.5 - t);
        sign = 1.0;
    }
    let x2 = angle * angle;
    let c = 1.0 + x2 * (-1.0 / 2.0 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0
        + x2 * (-1.0 / 3628800.0 + x2 * (1.0 / 479001600.0))))));
    return sign * c;
}

fn standard_normal(seed: u32, counter: u32) -> f32 {
    let key = pcg_hash(seed ^ 0x9E3779B9u);
    let u1 = unit(pcg_hash((counter * 2u) ^ key));
    let u2 = unit(pcg_hash((counter * 2u + 1u) ^ key));
    return sqrt(-2.0 * log(u1)) * cos_turns(u2);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.count) {
        return;
    }
    let ls = clamp(log_sigma[i], params.log_sigma_min, params.log_sigma_max);
    log_sigma[i] = ls;
    draws[i] = mean[i] + exp(ls) * standard_normal(params.seed, params.counter_base + i);
}
