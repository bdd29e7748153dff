"""Tiny, freshly initialised score-model checkpoints in diffzoo's format, from the real experiment
configs (what the tests exercise is evaluation / editing, not training)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from diffzoo.lit.build import build_module
from tests.helpers import compose_train

# A U-Net small enough for a CPU test (8x8 digits).
TINY_UNET = ["net.base_channels=16", "net.channel_mult=[1,2]", "net.attention_resolutions=[]", "net.dropout=0.0"]


def write_score_checkpoint(path, experiment: str = "sde_vp_digits", overrides=(), step: int = 7, shape=(1, 8, 8)):
    """Build ``experiment`` (with ``overrides``) for data of ``shape`` and save it as ``diffzoo-train`` would."""
    torch.manual_seed(0)
    cfg = compose_train([f"experiment={experiment}", *overrides])
    module = build_module(cfg, tuple(shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "global_step": step,
                "diffzoo": {"config": OmegaConf.to_container(cfg, resolve=True), "data_shape": list(shape), "wandb_run_id": None}}, path)
    return path
