"""Helpers shared by the integration tests: compose the real config, run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, open_dict

from diffzoo.config import CONFIG_DIR, compose_config
from diffzoo.objectives.simple import SimpleLoss

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))

# Shrinks any run to seconds on a CPU: tiny step budget, few samples, CSV logs.
TINY = [
    "logger=csv",
    "trainer.max_steps=3",
    "trainer.log_every_n_steps=1",
    "final_samples=0",
    "callbacks.sample_grid.every_n_steps=1000000",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.evaluation=null",
]


def compose_train(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """Compose ``train.yaml`` with ``overrides`` (as the CLI would) and set ``run_dir``."""
    cfg = compose_config("train", overrides)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)
    return cfg


def train_tiny(experiment: str, run_dir: Path, *overrides: str) -> Path:
    """Train ``experiment`` with the :data:`TINY` budget into ``run_dir``; return its ``last.ckpt``."""
    from diffzoo.train import train

    train(compose_train([f"experiment={experiment}", *TINY, *overrides], run_dir=run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def run_cli(module: str, args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` in a subprocess (needed for DDP, signals and exit codes)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("DIFFZOO_RUN_DIR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def make_loss_recorder(path: str):
    """A callback appending ``step loss`` lines to ``path`` (instantiate it from config with
    ``+callbacks.losses._target_=tests.helpers.make_loss_recorder``)."""
    import lightning as L

    class _Recorder(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            with open(path, "a") as f:
                f.write(f"{trainer.global_step} {float(loss)!r}\n")

    return _Recorder()


class RecordingSimpleLoss(SimpleLoss):
    """L_simple that appends, per call, the first drawn t and the label-drop mask (labels equal to the
    net's null class) to ``path`` — what a training step drew, for tests through the real ``train()``."""

    def __init__(self, path: str, prediction: str = "eps", weighting: str = "none", snr_gamma: float = 5.0):
        super().__init__(prediction=prediction, weighting=weighting, snr_gamma=snr_gamma)
        self.path = path

    def forward(self, net, schedule, x0, **cond):
        out = super().forward(net, schedule, x0, **cond)
        null = getattr(net, "null_class", None)
        mask = (cond["y"] == null).int().tolist() if "y" in cond and null is not None else []
        with open(self.path, "a") as f:
            f.write(" ".join(str(v) for v in out.t[:8].tolist()) + " | " + "".join(map(str, mask[:32])) + "\n")
        return out


def randomize_parameters(net, seed: int = 0, std: float = 0.1):
    """Every parameter of ``net`` (an ``nn.Module``, returned) N(0, std²), in eval mode: zero-initialised output layers would hide what a test
    looks for (a condition's effect, a copied weight)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen))
    return net.eval()
