// One GRU step for a batch, given both gate pre-activations (the candle-nn /
// PyTorch GRU: gates r, z, n in that order along 3H):
//   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z)
//   n = tanh(gi_n + r * gh_n),  h' = z * h + (1 - z) * n
// gi rows may be strided (layer-1 pre-activations are computed for every
// window step at once: row b of step t is at b * gi_stride + gi_offset).
// h is updated in place: each invocation reads and writes only its element.

struct Dims {
    rows: u32,
    hidden: u32,
    gi_stride: u32,
    gi_offset: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> gi: array<f32>;
@group(0) @binding(2) var<storage, read> gh: array<f32>;
@group(0) @binding(3) var<storage, read_write> h: array<f32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= dims.rows * dims.hidden) {
        return;
    }
    let row = index / dims.hidden;
    let j = index % dims.hidden;
    let i = row * dims.gi_stride + dims.gi_offset;
    let g = row * 3u * dims.hidden;
    let r = sigmoid(gi[i + j] + gh[g + j]);
    let z = sigmoid(gi[i + dims.hidden + j] + gh[g + dims.hidden + j]);
    // tanh saturates long before 15; the clamp keeps exp-based tanh finite.
    let n = tanh(clamp(gi[i + 2u * dims.hidden + j] + r * gh[g + 2u * dims.hidden + j], -15.0, 15.0));
    h[index] = z * h[index] + (1.0 - z) * n;
}
