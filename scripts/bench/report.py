"""Render docs/benchmarks.md from the JSON lines scripts/bench.sh collected."""

import datetime
import json
import os
import subprocess
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
measured = [r for r in rows if "sweep_ms" in r]
skipped = [r for r in rows if "skipped" in r]


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def find(engine, threads):
    return next((r for r in measured if r["engine"] == engine and r["threads"] == threads), None)


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Benchmarks",
    "",
    "Written by `make bench` (`scripts/bench.sh`); do not edit by hand. All rows come from one run on one machine,",
    "so compare ratios within the table; absolute times on a shared machine are noisy.",
    "",
    f"Machine: {cpu_model()}, {os.cpu_count()} cores; commit {commit}; {datetime.date.today().isoformat()}.",
    "",
    "## World model: full candidate sweep",
    "",
    "One sweep = 25 candidates x 5 ensemble members x 16 samples x 6 steps of 4 h from the reference patient",
    "(`sepsis_core::simulation::reference_course`) = 12,000 simulated patient-steps. Each rollout carries its",
    "members' GRU state (core/src/world_model/simulate.rs). Native candle: criterion median (`core/benches/simulate.rs`);",
    "PyTorch: median of 20 sweeps with the same weights, architecture and batch (`scripts/bench/pytorch_world_model.py`);",
    "browser: median of 10 sweeps in a dedicated worker in headless Chromium (`worker/tests/bench_in_worker.rs`).",
    "",
    "| engine | where | threads | sweep (ms) | patient-steps / s |",
    "|---|---|---|---|---|",
]
for r in measured:
    lines.append(f"| {r['engine']} | {r.get('device', r.get('torch', ''))} | {r['threads']} | {r['sweep_ms']:.1f} | {r['patient_steps_per_s']:,.0f} |")
for r in skipped:
    lines.append(f"| {r['engine']} | {r['skipped']} | | | |")

lines += ["", "## Against the targets", ""]
native1, native2 = find("candle-native-cpu", 1), find("candle-native-cpu", 2)
torch1, torch2 = find("pytorch-cpu", 1), find("pytorch-cpu", 2)
browser = find("candle-wasm-cpu", 1)


def verdict(ok):
    return "met" if ok else "**not met**"


if native1 and torch1:
    ratio = torch1["sweep_ms"] / native1["sweep_ms"]
    lines.append(f"- Native candle at least as fast as PyTorch, 1 thread: candle {native1['sweep_ms']:.1f} ms vs PyTorch {torch1['sweep_ms']:.1f} ms (PyTorch / candle = {ratio:.2f}): {verdict(ratio >= 1.0)}.")
if native2 and torch2:
    ratio = torch2["sweep_ms"] / native2["sweep_ms"]
    lines.append(f"- Same with 2 threads: candle {native2['sweep_ms']:.1f} ms vs PyTorch {torch2['sweep_ms']:.1f} ms (PyTorch / candle = {ratio:.2f}): {verdict(ratio >= 1.0)}.")
if browser and native1:
    share = native1["sweep_ms"] / browser["sweep_ms"]
    lines.append(f"- Browser CPU path at least half the native single-thread throughput: {100 * share:.0f}% of native: {verdict(share >= 0.5)}.")
best = min((r for r in measured if r["engine"] == "candle-native-cpu"), key=lambda r: r["sweep_ms"], default=None)
if best and browser:
    lines.append(f"- A full sweep under 150 ms: native candle {best['sweep_ms']:.1f} ms ({best['threads']} thread(s)): {verdict(best['sweep_ms'] < 150)}; "
                 f"browser CPU {browser['sweep_ms']:.1f} ms: {verdict(browser['sweep_ms'] < 150)}.")
if any(r["engine"] == "wgsl-webgpu" for r in skipped):
    lines.append("- WebGPU: this machine's only adapter is SwiftShader, a CPU emulation, so the WGSL path is not timed here; "
                 "its correctness against the CPU (1e-4) is proved by the parity tests (`make test-wasm`). "
                 "No GPU machine was lent to this session to time it on real hardware.")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
