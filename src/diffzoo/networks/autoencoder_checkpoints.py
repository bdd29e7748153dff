"""State-dict layouts of the first-stage autoencoders: CompVis's (``ldm/models/autoencoder.py``,
also inside LDM checkpoints under ``first_stage_model.``) and diffusers' (``AutoencoderKL``,
``VQModel``), mapped onto :mod:`diffzoo.networks.autoencoder`.

diffzoo's module names *are* CompVis's, so a CompVis state dict needs only its prefix stripped and
its loss (discriminator, LPIPS, logvar) dropped. diffusers renames (``down.{i}.block.{j}`` →
``down_blocks.{i}.resnets.{j}``, ``nin_shortcut`` → ``conv_shortcut``, ``norm_out`` →
``conv_norm_out``, ``mid.block_1`` → ``mid_block.resnets.0`` …), counts the decoder's levels from
the lowest resolution (``up_blocks.k`` is CompVis ``up.{L−1−k}``) and stores the attention
projections as ``Linear`` weights ``[C, C]`` instead of 1×1 convs ``[C, C, 1, 1]``.

:func:`diffusers_key_map` derives the mapping from a diffzoo network's own keys, so it covers every
layout the network can take (attention at any level, any depth) and is a bijection by construction.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError

__all__ = ["LAYOUTS", "COMPVIS_PREFIX", "from_compvis", "diffusers_key_map", "to_diffusers", "from_diffusers",
           "load_autoencoder_state", "diffusers_config"]

LAYOUTS = ("diffzoo", "compvis", "diffusers")
COMPVIS_PREFIX = "first_stage_model."  # where an LDM checkpoint keeps its autoencoder

_ATTN_LEAVES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def from_compvis(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CompVis autoencoder state dict — alone (``encoder.down.0.block.0…``, ``loss.…``) or inside an
    LDM checkpoint (``first_stage_model.encoder…``) — → diffzoo keys (the loss's entries dropped)."""
    if any(k.startswith(COMPVIS_PREFIX) for k in state_dict):
        state_dict = {k[len(COMPVIS_PREFIX):]: v for k, v in state_dict.items() if k.startswith(COMPVIS_PREFIX)}
    return {k: v for k, v in state_dict.items() if not k.startswith("loss.")}


def _levels(keys) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.match(r"encoder\.down\.(\d+)\.", k))]
    if not found:
        raise CheckpointError("not an autoencoder state dict: no encoder.down.<i> keys")
    return max(found) + 1


def _diffusers_key(key: str, levels: int) -> str:
    part, rest = key.split(".", 1)
    if part not in ("encoder", "decoder"):
        return key  # quant_conv, post_quant_conv, quantize.embedding: same names
    attn = False
    if m := re.match(r"down\.(\d+)\.(block|attn)\.(\d+)\.(.*)", rest):
        i, kind, j, leaf = m.groups()
        attn = kind == "attn"
        head = f"down_blocks.{i}.{'attentions' if attn else 'resnets'}.{j}"
    elif m := re.match(r"down\.(\d+)\.downsample\.(.*)", rest):
        head, leaf = f"down_blocks.{m.group(1)}.downsamplers.0", m.group(2)
    elif m := re.match(r"up\.(\d+)\.(block|attn)\.(\d+)\.(.*)", rest):
        i, kind, j, leaf = m.groups()
        attn = kind == "attn"
        head = f"up_blocks.{levels - 1 - int(i)}.{'attentions' if attn else 'resnets'}.{j}"
    elif m := re.match(r"up\.(\d+)\.upsample\.(.*)", rest):
        head, leaf = f"up_blocks.{levels - 1 - int(m.group(1))}.upsamplers.0", m.group(2)
    elif m := re.match(r"mid\.(block_1|block_2|attn_1)\.(.*)", rest):
        name, leaf = m.groups()
        attn = name == "attn_1"
        head = {"block_1": "mid_block.resnets.0", "block_2": "mid_block.resnets.1", "attn_1": "mid_block.attentions.0"}[name]
    elif rest.startswith("norm_out."):
        return f"{part}.conv_norm_out.{rest[len('norm_out.'):]}"
    else:
        return key  # conv_in, conv_out
    module, param = leaf.rsplit(".", 1)
    if attn:
        module = _ATTN_LEAVES[module]
    elif module == "nin_shortcut":
        module = "conv_shortcut"
    return f"{part}.{head}.{module}.{param}"


def diffusers_key_map(keys) -> dict[str, str]:
    """diffzoo / CompVis key → diffusers key for every key in ``keys`` (a state dict's keys)."""
    keys = list(keys)
    levels = _levels(keys)
    return {k: _diffusers_key(k, levels) for k in keys}


def _is_attn_projection(key: str) -> bool:
    return bool(re.search(r"\.(attn\.\d+|attn_1)\.(q|k|v|proj_out)\.weight$", key))


def to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffzoo / CompVis autoencoder state dict → diffusers ``AutoencoderKL`` / ``VQModel`` keys
    (attention 1×1 conv weights ``[C, C, 1, 1]`` → ``Linear`` ``[C, C]``)."""
    state_dict = from_compvis(state_dict)
    names = diffusers_key_map(state_dict)
    return {names[k]: (v[:, :, 0, 0] if _is_attn_projection(k) else v) for k, v in state_dict.items()}


def from_diffusers(state_dict: Mapping[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` / ``VQModel`` state dict → the keys of the diffzoo ``net`` it is
    loaded into (its own keys give the inverse map). Missing or unexpected keys are an error naming one."""
    names = diffusers_key_map(net.state_dict().keys())
    out = {}
    for ours, theirs in names.items():
        if theirs not in state_dict:
            raise CheckpointError(f"diffusers state dict lacks {theirs} (for {ours}); is it an autoencoder of this layout?")
        v = state_dict[theirs]
        out[ours] = v[:, :, None, None] if _is_attn_projection(ours) else v
    extra = sorted(set(state_dict) - set(names.values()))
    if extra:
        raise CheckpointError(f"diffusers state dict has {len(extra)} keys this autoencoder lacks, e.g. {extra[0]}")
    return out


def load_autoencoder_state(net: nn.Module, state_dict: Mapping[str, torch.Tensor], layout: str = "compvis") -> nn.Module:
    """Load ``state_dict`` of ``layout`` (``diffzoo``, ``compvis`` or ``diffusers``) into ``net`` (strict)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout!r} is not one of {list(LAYOUTS)}")
    if layout == "compvis":
        state_dict = from_compvis(state_dict)
    elif layout == "diffusers":
        state_dict = from_diffusers(state_dict, net)
    net.load_state_dict(state_dict, strict=True)
    return net


def diffusers_config(net: nn.Module) -> dict:
    """Constructor arguments of the diffusers ``AutoencoderKL`` (``net.kind == "kl"``) or ``VQModel``
    with the layout of the diffzoo ``net`` (diffusers' KL model requires ``embed_dim == z_channels``)."""
    enc = net.encoder
    widths = [d.block[-1].conv2.out_channels for d in enc.down]
    attn = [len(d.attn) > 0 for d in enc.down]
    z_channels = net.post_quant_conv.out_channels
    cfg = dict(
        in_channels=net.in_channels, out_channels=net.out_channels,
        down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn),
        up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attn)),
        block_out_channels=tuple(widths), layers_per_block=len(enc.down[0].block),
        latent_channels=z_channels, norm_num_groups=enc.norm_out.num_groups,
    )
    if net.kind == "kl":
        if net.latent_channels != z_channels:
            raise ConfigError(f"diffusers' AutoencoderKL needs embed_dim == z_channels, got {net.latent_channels} and {z_channels}")
        return cfg
    return {**cfg, "num_vq_embeddings": net.quantize.n_embed, "vq_embed_dim": net.latent_channels}
