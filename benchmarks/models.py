"""The networks the benchmarks time: ours from the shipped configs, and diffusers' ``UNet2DModel``
built with the matched configuration (same widths, blocks, attention resolutions, groups, heads)."""

from __future__ import annotations

from pathlib import Path

import torch

from diffzoo.config import CONFIG_DIR

__all__ = ["net_config", "our_unet", "diffusers_unet", "num_parameters", "NETS"]

# Benchmark name → shipped net config.
NETS = {"digits": "unet_digits", "cifar10": "ddpm_cifar10"}


def net_config(name: str, **overrides) -> dict:
    """``conf/net/<NETS[name]>.yaml`` as a dict, with keyword overrides."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "net" / f"{NETS.get(name, name)}.yaml"))
    cfg.update(overrides)
    return cfg


def our_unet(name: str, **overrides) -> torch.nn.Module:
    """Our U-Net of the config ``name`` (``digits``: 1.11M parameters; ``cifar10``: DDPM's 35.7M)."""
    from hydra.utils import instantiate

    return instantiate(net_config(name, **overrides))


def num_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def diffusers_unet(name: str, **overrides):
    """diffusers' ``UNet2DModel`` with the architecture of our config ``name``: DDPM's sinusoidal
    embedding (no sin/cos flip, frequency shift 1), TF "SAME" strided-conv downsampling (padding 0),
    attention after every ResBlock at the listed resolutions and in the middle, GroupNorm ε 1e-6.
    The parameter counts equal ours for the shipped configs (tested)."""
    import diffusers

    cfg = net_config(name, **overrides)
    widths = tuple(cfg["base_channels"] * m for m in cfg["channel_mult"])
    resolutions = [cfg["image_size"] // 2**i for i in range(len(widths))]
    attn = set(cfg["attention_resolutions"])
    down = tuple("AttnDownBlock2D" if r in attn else "DownBlock2D" for r in resolutions)
    up = tuple("AttnUpBlock2D" if r in attn else "UpBlock2D" for r in reversed(resolutions))
    if cfg.get("num_head_channels"):
        head_dim = cfg["num_head_channels"]
    else:
        head_dim = None if cfg.get("num_heads", 1) == 1 else widths[-1] // cfg["num_heads"]
    return diffusers.UNet2DModel(
        sample_size=cfg["image_size"], in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        block_out_channels=widths, layers_per_block=cfg["num_res_blocks"],
        down_block_types=down, up_block_types=up, norm_num_groups=cfg["num_groups"], norm_eps=1e-6,
        attention_head_dim=head_dim, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
        dropout=cfg["dropout"], resnet_time_scale_shift="scale_shift" if cfg.get("use_scale_shift_norm") else "default",
    )
