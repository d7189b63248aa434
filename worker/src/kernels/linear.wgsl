// Batched linear layer for every ensemble member at once:
//   y[m, r, o] = b[m, o] + sum_k x[m, r, k] * w[m, o, k]
// (w is outputs x inputs, row-major per member: the candle-nn / PyTorch
// Linear layout; members are stacked one after another in every buffer).
//
// One workgroup computes a 16 x 16 tile of outputs (rows x outputs) of one
// member (workgroup_id.z). The inputs are read 16 at a time into workgroup
// memory, each value once per tile, in loads that neighbouring invocations
// make together. A plain dot product per invocation instead waits on one
// global load per multiply-add, which on a real GPU costs more than the
// whole layer's arithmetic.

struct Dims {
    rows: u32,     // rows per member
    inputs: u32,
    outputs: u32,
    _pad: u32,
}

const TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// [row][k] and [output][k]; the weight tile's rows are padded to 17 so that
// invocations reading one k of 16 different outputs hit different banks.
var<workgroup> x_tile: array<array<f32, 16>, 16>;
var<workgroup> w_tile: array<array<f32, 17>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let member = group.z;
    let row = group.y * TILE + local.y;
    let out = group.x * TILE + local.x;
    let x_base = member * dims.rows * dims.inputs;
    let w_base = member * dims.outputs * dims.inputs;
    // The invocation at (local.y, local.x) loads row local.y of each tile.
    let w_row = group.x * TILE + local.y;
    var acc = 0.0;
    for (var k0 = 0u; k0 < dims.inputs; k0 = k0 + TILE) {
        let k = k0 + local.x;
        var xv = 0.0;
        if (row < dims.rows && k < dims.inputs) {
            xv = x[x_base + row * dims.inputs + k];
        }
        x_tile[local.y][local.x] = xv;
        var wv = 0.0;
        if (w_row < dims.outputs && k < dims.inputs) {
            wv = w[w_base + w_row * dims.inputs + k];
        }
        w_tile[local.y][local.x] = wv;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk = kk + 1u) {
            acc = acc + x_tile[local.y][kk] * w_tile[local.x][kk];
        }
        workgroupBarrier();
    }
    if (row < dims.rows && out < dims.outputs) {
        y[(member * dims.rows + row) * dims.outputs + out] = acc + b[member * dims.outputs + out];
    }
}
