// Batched linear layer: y[r, o] = b[o] + sum_k x[r, k] * w[o, k]
// (w is outputs x inputs, row-major: the candle-nn / PyTorch Linear layout).
// One invocation per output element; the world model's layers are small
// (<= a few hundred wide), so a plain dot product per thread is enough here.

struct Dims {
    batch: u32,
    inputs: u32,
    outputs: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= dims.batch * dims.outputs) {
        return;
    }
    let row = index / dims.outputs;
    let out = index % dims.outputs;
    var acc = b[out];
    for (var k = 0u; k < dims.inputs; k = k + 1u) {
        acc = acc + x[row * dims.inputs + k] * w[out * dims.inputs + k];
    }
    y[index] = acc;
}
