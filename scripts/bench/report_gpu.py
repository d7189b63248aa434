"""Render docs/benchmarks-gpu.md from the rows and the log scripts/bench-gpu.sh collected."""

import datetime
import json
import os
import re
import subprocess
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
log = open(sys.argv[2]).read()
target = sys.argv[3]


def find(engine, threads=None):
    return next((r for r in rows if r["engine"] == engine and (threads is None or r["threads"] == threads)), None)


adapter = re.search(r"gpu_simulate: adapter (.*)", log)
parity = re.search(r"matches the CPU within (\S+)", log)
machine = re.search(r"^machine: (.*)", log, re.M)
# The first split is the one beside the GPU row (the later runs time the CPU alone).
split = re.search(r"a sweep spends (\S+) ms setting up, (\S+) ms in the GPU's steps and (\S+) ms in the rollout's CPU work", log)
# A copy of the tree without .git (the lent GPU machine) gets its commit from COMMIT.
commit = os.environ.get("COMMIT") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
where = {
    "wgsl-vulkan": "GPU: our WGSL kernels through wgpu (Vulkan)",
    "pytorch-cuda": "GPU: PyTorch eager on CUDA",
    "candle-native-cpu": "CPU: candle",
    "pytorch-cpu": "CPU: PyTorch",
}
lines = [
    "# Benchmarks on a real GPU",
    "",
    "Written by `make bench-gpu` (`scripts/bench-gpu.sh`) on a machine with a GPU; do not edit by hand.",
    "All rows come from one run on one machine; `docs/benchmarks.md` (`make bench`) holds the 2-core",
    "development machine's table and the browser.",
    "",
    f"Machine: {adapter.group(1) if adapter else 'no adapter found'}; {machine.group(1) if machine else 'CPU not recorded'};"
    f" commit {commit or 'unknown'}; {datetime.date.today().isoformat()}.",
    "",
    "The same sweep as `docs/benchmarks.md`: 25 candidates x 5 members x 16 samples x 6 steps = 12,000",
    "simulated patient-steps. The GPU row runs the browser's WebGPU path natively: its WGSL kernels",
    "(`worker/src/kernels/`), its buffers and launches and one readback per step (`worker/src/gpu_world_model.rs`),",
    "through wgpu's Vulkan backend instead of the browser's WebGPU (`worker/benches/gpu_simulate.rs`, criterion median).",
    "Before timing, the bench checks the GPU's whole sweep against candle's on the CPU"
    + (f": they agreed within {parity.group(1)} (the browser's parity test allows 1e-4)." if parity else "."),
    "PyTorch: median of the sweeps `scripts/bench/pytorch_world_model.py` times (`--device cuda`: to the end of the GPU's work).",
    "",
    "| engine | where | threads | sweep (ms) | patient-steps / s |",
    "|---|---|---|---|---|",
]
order = ["wgsl-vulkan", "pytorch-cuda", "candle-native-cpu", "pytorch-cpu"]
for r in sorted(rows, key=lambda r: (order.index(r["engine"]), r["threads"])):
    lines.append(f"| {r['engine']} | {where[r['engine']]} | {r['threads']} | {r['sweep_ms']:.1f} | {r['patient_steps_per_s']:,.0f} |")

gpu, cuda = find("wgsl-vulkan"), find("pytorch-cuda")
cpu_all = max((r for r in rows if r["engine"] == "candle-native-cpu"), key=lambda r: r["threads"], default=None)
lines += ["", "## Reading the table", ""]
if gpu and cuda:
    lines.append(f"- Our kernels against PyTorch on the same GPU: {gpu['sweep_ms']:.1f} ms against {cuda['sweep_ms']:.1f} ms "
                 f"(PyTorch / ours = {cuda['sweep_ms'] / gpu['sweep_ms']:.2f}).")
if gpu and cpu_all:
    lines.append(f"- Our kernels against candle on all {cpu_all['threads']} CPU threads of the same machine: "
                 f"{gpu['sweep_ms']:.1f} ms against {cpu_all['sweep_ms']:.1f} ms (CPU / GPU = {cpu_all['sweep_ms'] / gpu['sweep_ms']:.2f}).")
if split:
    setting_up, gpu_steps, cpu_work = (float(split.group(i)) for i in (1, 2, 3))
    lines.append(f"- Where a GPU sweep's time goes (mean of 20 sweeps, timed apart from criterion): {setting_up:.2f} ms building "
                 f"and dropping a plan (its buffers and launches; a request of a shape seen before reuses the kept one), {gpu_steps:.2f} ms in the GPU's six steps (inputs up, the launches, the readback), "
                 f"{cpu_work:.2f} ms in the rollout's own work on the CPU between steps (which values stay, the quantiles, the "
                 "disagreement, the next inputs). The GPU path shares that work with the CPU path (`Rollout::advance`).")
lines += [
    "- In a browser, WebGPU adds its own validation and the GPU process's round trip to each submission and",
    "  readback; Chromium does not travel to the GPU machine, so that is not measured here.",
]
open(target, "w").write("\n".join(lines) + "\n")
