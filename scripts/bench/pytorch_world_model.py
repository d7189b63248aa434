"""The world model's full candidate sweep in PyTorch on the CPU, for the
benchmark table in docs/benchmarks.md (run by `make bench`, never by the app).

Same weights (public/models/world-model.safetensors), same architecture and
batch as the candle path (core/src/world_model/simulate.rs): per member, a
2-layer GRU (hidden 128) and an outcome GRU (hidden 64) read the context of
the reference patient as the Rollout does (the earlier step once, each
candidate's current step once, the state then repeated for its 16 samples),
then carry their state through the rest of the 6 simulated steps of
25 candidates x 16 samples, drawing each next step from the Gaussian head.
The Gaussian draws use torch's own generator: this measures speed, not values.

`--device cuda` runs the same sweep on a GPU (eager PyTorch, the tool a
researcher would reach for), timed to the end of the GPU's work, for the
WebGPU kernels' comparison on the lent GPU machine (docs/benchmarks.md).

Prints one JSON object per thread count.
"""

import argparse
import json
import struct
import time

import numpy as np
import torch

CANDIDATES, SAMPLES, HORIZON = 25, 16, 6
LOG_SIGMA_RANGE = (-5.0, 1.5)


def load_safetensors(path):
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        assert info["dtype"] == "F32", name
        tensors[name] = torch.from_numpy(np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"]).copy())
    return tensors


def gru_cell(weights, prefix):
    w_ih = weights[f"{prefix}.weight_ih_l0"]
    cell = torch.nn.GRUCell(w_ih.shape[1], w_ih.shape[0] // 3)
    with torch.no_grad():
        cell.weight_ih.copy_(w_ih)
        cell.weight_hh.copy_(weights[f"{prefix}.weight_hh_l0"])
        cell.bias_ih.copy_(weights[f"{prefix}.bias_ih_l0"])
        cell.bias_hh.copy_(weights[f"{prefix}.bias_hh_l0"])
    return cell


def linear(weights, prefix):
    w = weights[f"{prefix}.weight"]
    layer = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(weights[f"{prefix}.bias"])
    return layer


class Member:
    def __init__(self, weights, k):
        p = f"member{k}"
        self.gru1, self.gru2 = gru_cell(weights, f"{p}.gru1"), gru_cell(weights, f"{p}.gru2")
        self.outcome_gru = gru_cell(weights, f"{p}.outcome_gru")
        self.stay_logit = linear(weights, f"{p}.stay_logit")
        self.mean, self.log_sigma = linear(weights, f"{p}.mean"), linear(weights, f"{p}.log_sigma")
        self.outcome = linear(weights, f"{p}.outcome")

    def step(self, x, state):
        h1, h2, ho = state
        h1 = self.gru1(x, h1)
        h2 = self.gru2(h1, h2)
        ho = self.outcome_gru(x, ho)
        return h1, h2, ho

    def heads(self, state):
        _, h2, ho = state
        return self.stay_logit(h2), self.mean(h2), self.log_sigma(h2).clamp(*LOG_SIGMA_RANGE), self.outcome(ho).squeeze(1)


def sweep(members, earlier, current, dynamic, statics, actions):
    """One full sweep; returns the survival of every row after the horizon."""
    rows = CANDIDATES * SAMPLES
    device = current.device
    ones = torch.ones(rows, dynamic, device=device)
    survival = None
    for member in members:
        state = tuple(torch.zeros(1, n, device=device) for n in (128, 128, 64))
        for t in range(earlier.shape[0]):
            state = member.step(earlier[t : t + 1], state)
        state = member.step(current, tuple(s.expand(CANDIDATES, -1) for s in state))
        heads = [h.repeat_interleave(SAMPLES, 0) for h in member.heads(state)]
        state = tuple(s.repeat_interleave(SAMPLES, 0) for s in state)
        values = current[:, :dynamic].repeat_interleave(SAMPLES, 0)
        for t in range(HORIZON):
            if t > 0:
                heads = member.heads(state)
            stay_logit, mean, log_sigma, logit = heads
            # As the Rollout does: a row keeps its values with the stay
            # probability (one uniform per row), else takes the Gaussian draw.
            gaussian = mean + log_sigma.exp() * torch.randn_like(mean)
            stays = torch.rand(rows, 1, device=device) < torch.sigmoid(stay_logit)
            values = torch.where(stays, values, gaussian)
            survival = 1.0 - torch.sigmoid(logit)
            if t + 1 < HORIZON:
                x = torch.cat([values, ones, statics, actions], dim=1)
                state = member.step(x, state)
    return survival


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="public/models/world-model.safetensors")
    parser.add_argument("--card", default="public/models/world-model.json")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--context", type=int, default=2, help="history steps read (the reference patient has 2)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU comparison")
    args = parser.parse_args()
    device = torch.device(args.device)

    card = json.load(open(args.card))
    weights = load_safetensors(args.weights)
    members = [Member(weights, k) for k in range(card["config"]["members"])]
    for member in members:
        for module in vars(member).values():
            module.to(device)
    dynamic, n_statics = len(card["layout"]["dynamic"]), len(card["layout"]["statics"])
    input_dim = 2 * dynamic + n_statics + 10
    rows = CANDIDATES * SAMPLES
    generator = torch.Generator().manual_seed(1)
    earlier = torch.randn(args.context - 1, input_dim, generator=generator)
    current = torch.randn(CANDIDATES, input_dim, generator=generator)
    statics = torch.randn(rows, n_statics, generator=generator)
    actions = torch.zeros(rows, 10)
    for r in range(rows):
        a = r // SAMPLES
        actions[r, a // 5] = 1.0
        actions[r, 5 + a % 5] = 1.0
    earlier, current, statics, actions = (t.to(device) for t in (earlier, current, statics, actions))

    def finish():
        # CUDA runs asynchronously: a sweep ends when the GPU's work does.
        if device.type == "cuda":
            torch.cuda.synchronize()

    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for _ in range(3):  # warm-up
                sweep(members, earlier, current, dynamic, statics, actions)
            finish()
            times = []
            for _ in range(args.iterations):
                start = time.perf_counter()
                sweep(members, earlier, current, dynamic, statics, actions)
                finish()
                times.append(time.perf_counter() - start)
        median = float(np.median(times))
        print(json.dumps({
            "engine": f"pytorch-{device.type}",
            **({"device": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
            "torch": torch.__version__,
            "threads": threads,
            "sweep_ms": median * 1000.0,
            "patient_steps_per_s": CANDIDATES * len(members) * SAMPLES * HORIZON / median,
            "iterations": args.iterations,
        }))


if __name__ == "__main__":
    main()
