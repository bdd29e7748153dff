"""Shared test set-up: offline, quiet, one thread per process, outputs under pytest's tmp dirs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")
# One thread per process: the suite starts subprocesses (CLI, DDP ranks, notebook kernels) next to
# the pytest process, and OpenMP threads that outnumber the cores spin and slow everything down.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Every test writes W&B / caches / runs below its own tmp dir and starts from a fixed seed."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("DIFFZOO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DIFFZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIFFZOO_RUN_DIR", raising=False)
    torch.manual_seed(0)
    yield
