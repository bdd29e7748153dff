"""The ``first_stage`` part of latent diffusion from a config: a trained autoencoder's checkpoint, or (a
wiring check only) its architecture untrained.

``first_stage_from(ckpt_path=…)`` loads the autoencoder of an ``ae_*`` run (:func:`diffzoo.lit.autoencoder.
load_first_stage`) and remembers the architecture config that run stored (``first_stage_config``), so a
latent model's checkpoint, which holds the first stage's weights, rebuilds without the autoencoder's file
(:meth:`diffzoo.lit.latent_diffusion.LatentMixin.on_save_checkpoint`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..checkpoints import load_checkpoint
from ..errors import ConfigError

__all__ = ["first_stage_from"]

log = logging.getLogger(__name__)


def first_stage_from(ckpt_path: str | None = None, architecture=None, untrained_ok: bool = False,
                     use_ema: bool = True) -> nn.Module:
    """The frozen first stage of a latent diffusion model.

    Args:
        ckpt_path: an autoencoder checkpoint written by ``diffzoo-train experiment=ae_…``.
        architecture: the autoencoder's config (``_target_`` …), built untrained when ``ckpt_path`` is null
            and ``untrained_ok`` (a ``fast_dev_run`` wiring check: experiments set
            ``untrained_ok: ${trainer.fast_dev_run}``).
        use_ema: the autoencoder's EMA weights when it has them.
    Returns: the autoencoder (``encode(x [B, C, H, W]) → z [B, C_z, H/f, W/f]``, ``decode``), with
    ``first_stage_config`` set to a config that builds its architecture.
    """
    if ckpt_path is not None:
        if not Path(str(ckpt_path)).is_file():
            raise ConfigError(f"first_stage.ckpt_path={ckpt_path} does not exist; train the autoencoder first "
                              "(diffzoo-train experiment=ae_…) and pass its checkpoint")
        from .autoencoder import load_first_stage

        net = load_first_stage(ckpt_path, use_ema=use_ema)
        meta = load_checkpoint(ckpt_path).get("diffzoo") or {}
        net.first_stage_config = (meta.get("config") or {}).get("net")
        return net
    if architecture is None or not untrained_ok:
        raise ConfigError("first_stage.ckpt_path is null: train the autoencoder first (diffzoo-train experiment=ae_…) and "
                          "set first_stage.ckpt_path=<its checkpoints/last.ckpt> (an untrained first stage is only built "
                          "for trainer.fast_dev_run)")
    config = OmegaConf.to_container(architecture, resolve=True) if isinstance(architecture, DictConfig) else dict(architecture)
    log.warning("first_stage: an UNTRAINED %s (first_stage.ckpt_path is null; a wiring check only)", config.get("_target_"))
    net = instantiate(config)
    net.first_stage_config = config
    return net.eval().requires_grad_(False)
