# Every target creates and reuses .venv itself: a fresh machine needs only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
DEMO_DATA ?= data/demo-kaggle
DEVICE ?= cuda

.PHONY: demo test bench gpu-check lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

demo: $(STAMP)
	$(BIN)/hotrec demo --data $(DEMO_DATA)

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/prepare_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/schedules.py
	$(BIN)/python benchmarks/slipstream.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/representations.py --rows 2000000
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/serving.py --target-ms 50 --name serving_cpu_target50
	$(BIN)/python benchmarks/serving_overload.py

# On a GPU machine: the CUDA tests and the GPU benchmarks, results in benchmarks/results/*_gpu.*
# DEVICE=emulated: the same steps at CI size on the CPU (results under benchmarks/work).
gpu-check: $(DEV_STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/gpu_check.py --device $(DEVICE)

lint: $(DEV_STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
