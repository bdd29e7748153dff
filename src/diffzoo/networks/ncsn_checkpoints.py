"""Load the official NCSN / NCSNv2 checkpoints (ermongroup/ncsn ``checkpoint.pth``, ermongroup/ncsnv2
``checkpoint_<step>.pth``) into :class:`~diffzoo.networks.ncsn_refinenet.NCSNRefineNet`.

Both official runners save a list ``[model_state, optimizer_state, ...]``; NCSNv2 appends
``epoch, step`` and, with EMA on, the EMA shadow parameters last. Model states were saved from
``nn.DataParallel`` (keys start with ``module.``). Our blocks carry the official parameter names
except for three containers, renamed here:

* encoder stages ``res1, res2, …`` (``res31`` in the FFHQ net) → ``stages.<i>``;
* RefineNet blocks ``refine1, refine2, …`` (``refine31``) → ``refines.<i>``, deepest first;
* residual conv units ``<block>_<stage>_{norm,conv}`` (1-based) → ``blocks.<block−1>.<stage−1>.{norm,conv}``.

The NCSNv2 buffer ``sigmas`` is dropped: the noise levels live in the schedule config.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .ncsn_refinenet import NCSNRefineNet

__all__ = ["OFFICIAL_STAGE_NAMES", "convert_official_state_dict", "load_official_weights"]

# Official attribute names of the encoder stages / decoder blocks, in forward order (the decoder's
# from the deepest stage up): ncsn/models/cond_refinenet_dilated.py, ncsnv2/models/ncsnv2.py.
OFFICIAL_STAGE_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ncsn": (("res1", "res2", "res3", "res4"), ("refine1", "refine2", "refine3", "refine4")),
    "ncsnv2": (("res1", "res2", "res3", "res4"), ("refine1", "refine2", "refine3", "refine4")),
    "ncsnv2_deeper": (("res1", "res2", "res3", "res4", "res5"), ("refine1", "refine2", "refine3", "refine4", "refine5")),
    "ncsnv2_deepest": (("res1", "res2", "res3", "res31", "res4", "res5"),
                       ("refine1", "refine2", "refine31", "refine3", "refine4", "refine5")),
}
_RCU_KEY = re.compile(r"(adapt_convs\.\d+|output_convs)\.(\d+)_(\d+)_(norm|conv)\.")


def convert_official_state_dict(state_dict: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """Rename an official NCSN / NCSNv2 model (or EMA) state dict to :class:`NCSNRefineNet`'s keys.

    Args:
        state_dict: the official ``score.state_dict()`` (``module.`` prefixes allowed) or the EMA shadow.
        variant: ``"ncsn"``, ``"ncsnv2"``, ``"ncsnv2_deeper"`` or ``"ncsnv2_deepest"``.

    Returns:
        a new dict with the same tensors under diffzoo's names (``sigmas`` dropped).
    """
    if variant not in OFFICIAL_STAGE_NAMES:
        raise ValueError(f"convert_official_state_dict: variant must be one of {sorted(OFFICIAL_STAGE_NAMES)}, got {variant!r}")
    stage_names, refine_names = OFFICIAL_STAGE_NAMES[variant]
    containers = {name: f"stages.{i}" for i, name in enumerate(stage_names)}
    containers.update({name: f"refines.{i}" for i, name in enumerate(refine_names)})
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key == "sigmas":
            continue
        head, _, rest = key.partition(".")
        if head in containers:
            key = f"{containers[head]}.{rest}"
        key = _RCU_KEY.sub(lambda m: f"{m[1]}.blocks.{int(m[2]) - 1}.{int(m[3]) - 1}.{m[4]}.", key)
        out[key] = value
    return out


def load_official_weights(net: NCSNRefineNet, path: str | Path, ema: bool = True) -> NCSNRefineNet:
    """Load an official checkpoint file into ``net`` (strict: every parameter must match).

    Args:
        net: built with the checkpoint's variant, ``ngf``, channels and (NCSN) number of levels.
        path: the official ``checkpoint*.pth``.
        ema: take NCSNv2's EMA parameters (its runners sample with them); an error if the file has none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_official_weights: no checkpoint file at {path}")
    states = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(states, (list, tuple)) or not states or not isinstance(states[0], dict):
        raise ValueError(f"load_official_weights: {path} is not an official NCSN/NCSNv2 checkpoint "
                         "(expected a list [model_state, optimizer_state, ...])")
    model_state = convert_official_state_dict(states[0], net.variant)
    if ema:
        if len(states) < 5 or not isinstance(states[-1], dict):
            raise ValueError(f"load_official_weights: {path} holds no EMA parameters (NCSN checkpoints never do); "
                             "pass ema=False")
        model_state.update(convert_official_state_dict(states[-1], net.variant))
    net.load_state_dict(model_state, strict=True)
    return net
