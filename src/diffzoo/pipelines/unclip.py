"""What ``diffzoo-sample pipeline=unclip`` does (Ramesh et al. 2022): load the prior and the decoder that
``conf/pipeline/unclip.yaml`` names, then either

* **text → image** (``prompt="..."`` or ``prompts=[...]``; neither: the empty caption): sample ``i`` gets
  caption ``prompts[i mod P]``, the prior draws its image embedding (best of ``pipeline.prior.best_of``,
  §2.2) and the decoder turns it into an image (§2); or
* **image variations** (``variations=<.png / .npy file or folder>``, §3.1): each source image's CLIP
  embedding is decoded with different noise; sample ``i`` is a variation of source ``i mod S``. The prior
  is not needed (its ``ckpt_path`` may stay unset).

In both uses the decoder's images then go through the optional **upsamplers** (``pipeline.upsamplers``, a
list, empty by default; §2.1: 64 → 256 → 1024 in the paper): each a super-resolution stage of the cascade
pipelines (:mod:`diffzoo.pipelines.cascade`, loaded and drawn by the same :func:`~diffzoo.pipelines.cascade.load_stage`
and :func:`~diffzoo.pipelines.cascade.draw_stage`) that super-resolves the previous stage's images at its
sampling-time augmentation level. §2.1 found no benefit in conditioning the upsamplers on the caption and uses
unconditional ones without guidance, so they get no class labels ever (a class-conditional stage is refused),
and the captions only when a stage is text-conditioned.

Sample ``i`` depends on ``(seed, i)`` only, whatever ``batch_size``. Writes ``<out>/grid.png`` (one labelled
row per prompt, or per source: the source, then its variations) and ``<out>/samples.npz`` (uint8 images
``[n, H, W, C]`` at the final resolution, the decoded embeddings ``z_i [n, e]``, and the captions or the source
of each sample); with upsamplers, every earlier stage's images as well, in ``<out>/<stage>/`` (``decoder``,
``upsampler0``, …), as the cascade pipelines write each stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

__all__ = ["STAGE_KEYS", "UPSAMPLER_KEYS", "IMAGE_SUFFIXES", "load_unclip", "load_upsamplers", "read_images",
           "sample_unclip", "evaluate_unclip"]

# the settings each stage of conf/pipeline/unclip.yaml takes
STAGE_KEYS = {"prior": ("ckpt_path", "sampler", "guidance", "best_of"), "decoder": ("ckpt_path", "sampler", "guidance")}
# the settings of each entry of pipeline.upsamplers: a cascade SR stage's, less augmentation (the decoder's chain is
# not truncated: its final image is corrupted at aug_level, the non-truncated augmentation of CDM §3.2)
UPSAMPLER_KEYS = ("ckpt_path", "sampler", "guidance", "aug_level")
# what each stage's checkpoint must hold, and the experiment that trains it
STAGE_MODULES = {"prior": ("UnCLIPPriorModule", "unclip_prior_captioned_digits"),
                 "decoder": ("UnCLIPDecoderModule", "unclip_decoder_captioned_digits")}
IMAGE_SUFFIXES = (".png", ".npy")


def _stage_cfg(pipeline_cfg: DictConfig, name: str) -> DictConfig:
    """``pipeline.<name>`` checked: a mapping of known settings with ``ckpt_path`` set to an existing file."""
    st = pipeline_cfg.get(name)
    if not isinstance(st, DictConfig):
        raise ConfigError(f"pipeline.{name} must be a mapping of {', '.join(STAGE_KEYS[name])} (see conf/pipeline/unclip.yaml)")
    unknown = sorted(set(st) - set(STAGE_KEYS[name]))
    if unknown:
        raise ConfigError(f"pipeline.{name}.{unknown[0]} is not a {name} setting; valid: {', '.join(STAGE_KEYS[name])}")
    experiment = STAGE_MODULES[name][1]
    if OmegaConf.is_missing(st, "ckpt_path") or not st.get("ckpt_path"):
        raise ConfigError(f"pipeline.{name}.ckpt_path must be set: the checkpoint of diffzoo-train experiment={experiment} "
                          f"(e.g. pipeline.{name}.ckpt_path=runs/{name}/checkpoints/last.ckpt)")
    path = Path(str(st.ckpt_path)).expanduser()
    if not path.is_file():
        raise ConfigError(f"pipeline.{name}.ckpt_path={st.ckpt_path}: no such file; it must be a .ckpt of diffzoo-train "
                          f"experiment={experiment}")
    return st


def _load_stage(pipeline_cfg: DictConfig, name: str, device):
    """``(module, sampler spec, guidance or None)`` of stage ``name`` (``prior`` | ``decoder``)."""
    from ..runtime import guidance_from_config, load_for_sampling

    st = _stage_cfg(pipeline_cfg, name)
    module, spec = load_for_sampling(st.ckpt_path, st.get("sampler"), device)
    cls, experiment = STAGE_MODULES[name]
    if type(module).__name__ != cls:
        raise ConfigError(f"pipeline.{name}.ckpt_path={st.ckpt_path} holds a {type(module).__name__}, not an unCLIP {name} "
                          f"({cls}); give a checkpoint of diffzoo-train experiment={experiment}")
    guidance = guidance_from_config(OmegaConf.create({"guidance": st.get("guidance")}), module, spec).guidance
    return module, spec, guidance


def _same_clip(prior, decoder) -> bool:
    """Whether the two stages hold the same CLIP weights (the prior models the embeddings the decoder reads)."""
    a, b = prior.clip.state_dict(), decoder.clip.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def load_unclip(pipeline_cfg: DictConfig, device, use_ema: bool = True, need_prior: bool = True):
    """The :class:`~diffzoo.lit.unclip.UnCLIP` of ``pipeline_cfg`` (``conf/pipeline/unclip.yaml``): the prior
    (skipped when ``need_prior`` is false, e.g. for variations) and the decoder, each with its sampler
    settings and guidance, on ``device``. Returns ``(unclip, info)`` with ``info`` the stages' checkpoints,
    samplers and guidance for the summary."""
    from ..lit.unclip import UnCLIP

    decoder, dec_spec, dec_guidance = _load_stage(pipeline_cfg, "decoder", device)
    prior, prior_spec, prior_guidance, best_of = None, None, None, None
    info: dict[str, Any] = {"decoder": _stage_info(pipeline_cfg.decoder, dec_spec, dec_guidance)}
    if need_prior:
        prior, prior_spec, prior_guidance = _load_stage(pipeline_cfg, "prior", device)
        best_of = pipeline_cfg.prior.get("best_of")
        if best_of is not None and (isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 1):
            raise ConfigError(f"pipeline.prior.best_of={best_of!r} must be a positive integer (§2.2 keeps the best of 2), "
                              "or null for the prior's own")
        if prior.clip.embed_dim != decoder.clip.embed_dim or not _same_clip(prior, decoder):
            raise ConfigError("pipeline.prior.ckpt_path and pipeline.decoder.ckpt_path were trained on different CLIPs; "
                              "train both stages with the same model.clip_ckpt")
        info = {"prior": {**_stage_info(pipeline_cfg.prior, prior_spec, prior_guidance),
                          "best_of": int(best_of or prior.num_candidates)}, **info}
    u = UnCLIP(decoder, prior, decoder_guidance=dec_guidance, prior_guidance=prior_guidance, sampler=dec_spec,
               prior_sampler=prior_spec, num_candidates=best_of, use_ema=use_ema)
    return u, info


def load_upsamplers(pipeline_cfg: DictConfig, shape, device, use_ema: bool = True) -> list:
    """The stages of ``pipeline.upsamplers`` (a list, absent or empty: none), loaded on ``device`` by the cascade
    pipelines' loader, named ``upsampler0``, ``upsampler1``, … and checked to chain: entry ``k`` must be an
    unconditional or text-conditioned super-resolution stage whose low-resolution input is the previous stage's
    output (``shape = (C, H, W)``, the decoder's, for the first), else one line naming
    ``pipeline.upsamplers[k].ckpt_path`` and both shapes."""
    from omegaconf import ListConfig

    from .cascade import check_upsampler, load_stage

    entries = pipeline_cfg.get("upsamplers")
    if entries is None:
        return []
    if not isinstance(entries, ListConfig):
        raise ConfigError(f"pipeline.upsamplers must be a list of stages ({{ckpt_path, sampler, guidance, aug_level}} each), "
                          f"e.g. 'pipeline.upsamplers=[{{ckpt_path: runs/sr/checkpoints/last.ckpt}}]'; got {entries!r}")
    stages, prev_key, prev_shape = [], "pipeline.decoder.ckpt_path", tuple(int(s) for s in shape)
    for k, entry in enumerate(entries):
        key = f"pipeline.upsamplers[{k}]"
        st = load_stage(entry, key, f"upsampler{k}", device, use_ema, UPSAMPLER_KEYS)
        check_upsampler(st, prev_shape, f"{key}.ckpt_path", prev_key)
        if "y" in st.module.denoiser(use_ema).cond_keys:
            raise ConfigError(f"{key}.ckpt_path={entry.ckpt_path} is a class-conditional super-resolution stage; unCLIP's "
                              "upsamplers are unconditional (§2.1) and pipeline=unclip has no class labels: train it with "
                              "model.conditional=false model.cond_drop_prob=0 net.backbone.num_classes=null")
        st.info.update(guidance=_guidance_text(st.guidance), aug_level=st.level, text=st.takes_text(),
                       resolution=_shape_text(st.module.data_shape[-2:]))
        stages.append(st)
        prev_key, prev_shape = f"{key}.ckpt_path", tuple(int(d) for d in st.module.data_shape)
    return stages


def _guidance_text(guidance) -> str | None:
    return None if guidance is None else f"{guidance.name} scale {float(guidance.scale):g}"


def _stage_info(st: DictConfig, spec, guidance) -> dict[str, Any]:
    return {"ckpt_path": str(st.ckpt_path), "sampler": spec.describe(), "guidance": _guidance_text(guidance)}


def read_images(path, shape) -> tuple[torch.Tensor, list[str]]:
    """The image(s) at ``path`` (``variations=``): a ``.png`` file, a ``.npy`` array, or a folder of them
    (its ``.png`` / ``.npy`` files in name order; other files are skipped) → ``(x [S, C, H, W] in [-1, 1],
    S names)``, checked against the decoder's ``shape = (C, H, W)``.

    A PNG is read as grey (C = 1) or RGB (C = 3). An ``.npy`` holds one image ``[H, W]`` (C = 1),
    ``[H, W, C]`` or ``[C, H, W]``, or several with a leading axis; uint8 is read as bytes 0–255 (what
    ``samples.npz`` stores), floats as values in ``[-1, 1]``."""
    root = Path(str(path)).expanduser()
    if not root.exists():
        raise ConfigError(f"variations={path}: no such file or folder; it must be a .png / .npy image or a folder of them")
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"variations={path}: the folder holds no .png or .npy files")
    elif root.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"variations={path}: not a .png or .npy file; it must be a .png / .npy image or a folder of them")
    else:
        files = [root]
    images, names = [], []
    for f in files:
        x = _read_png(f, shape) if f.suffix.lower() == ".png" else _read_npy(f, shape)
        images.append(x)
        names += [f.name] if len(x) == 1 else [f"{f.name}[{k}]" for k in range(len(x))]
    return torch.cat(images), names


def _shape_text(shape) -> str:
    return "×".join(str(int(s)) for s in shape)


def _read_png(f: Path, shape) -> torch.Tensor:
    """One PNG → ``[1, C, H, W]`` in ``[-1, 1]``."""
    from PIL import Image, UnidentifiedImageError

    C, H, W = (int(s) for s in shape)
    if C not in (1, 3):
        raise ConfigError(f"variations={f}: the decoder makes {C}-channel images; give .npy arrays of shape {_shape_text(shape)}")
    try:
        with Image.open(f) as im:
            size = im.size
            arr = np.asarray(im.convert("L" if C == 1 else "RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"variations={f}: not a readable PNG ({e})") from None
    if size != (W, H):
        raise ConfigError(f"variations={f}: a {size[1]}×{size[0]} image, but the decoder makes {H}×{W} images "
                          f"(C×H×W = {_shape_text(shape)}); give images of that size")
    x = torch.from_numpy(arr.astype(np.float32)).reshape(H, W, C).permute(2, 0, 1)
    return (x / 127.5 - 1)[None]


def _read_npy(f: Path, shape) -> torch.Tensor:
    """One ``.npy`` → ``[S, C, H, W]`` in ``[-1, 1]`` (see :func:`read_images`)."""
    C, H, W = (int(s) for s in shape)
    try:
        arr = np.load(f, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ConfigError(f"variations={f}: not a readable .npy array ({e})") from None
    one = arr.shape in ((C, H, W), (H, W, C)) or (C == 1 and arr.shape == (H, W))
    a = arr.reshape(1, *arr.shape) if one else arr  # one image, or a stack [S, ...]
    if a.ndim == 3 and C == 1 and a.shape[1:] == (H, W):
        a = a[:, None]  # [S, H, W] grey images
    elif a.ndim == 4 and a.shape[1:] == (H, W, C) and a.shape[1:] != (C, H, W):
        a = a.transpose(0, 3, 1, 2)
    elif not (a.ndim == 4 and a.shape[1:] == (C, H, W)):
        raise ConfigError(f"variations={f}: an array of shape {list(arr.shape)}, but the decoder makes images of C×H×W = "
                          f"{_shape_text(shape)}; give [H, W, C], [C, H, W] or a stack [S, ...] of them")
    if a.dtype == np.uint8:
        x = torch.from_numpy(a.astype(np.float32)) / 127.5 - 1
    elif np.issubdtype(a.dtype, np.floating):
        x = torch.from_numpy(a.astype(np.float32))
        if not torch.isfinite(x).all() or x.min() < -1 - 1e-4 or x.max() > 1 + 1e-4:
            raise ConfigError(f"variations={f}: float values must lie in [-1, 1] (found {float(x.min()):.3g} … "
                              f"{float(x.max()):.3g}); store uint8 bytes or images scaled to [-1, 1]")
        x = x.clamp(-1, 1)
    else:
        raise ConfigError(f"variations={f}: dtype {a.dtype} is not an image; store uint8 (0–255) or floats in [-1, 1]")
    return x.contiguous()


def _use_of(cfg: DictConfig) -> tuple[str, list[str] | None]:
    """``("text", captions)`` or ``("variations", None)`` from ``prompt`` / ``prompts`` / ``variations``,
    refusing what does not fit unCLIP (in one line naming the key)."""
    prompt, prompts, variations = cfg.get("prompt"), cfg.get("prompts"), cfg.get("variations")
    if cfg.get("y") is not None:
        raise ConfigError(f"y={cfg.y} is given but pipeline=unclip takes captions, not class labels: use prompt=\"...\" "
                          "or leave y=null")
    if variations is not None:
        if prompt is not None or prompts is not None:
            raise ConfigError(f"{'prompt' if prompt is not None else 'prompts'} and variations are two different uses of "
                              "pipeline=unclip: give prompt=... / prompts=[...] (text → image) or variations=PATH (image "
                              "variations), not both")
        if not isinstance(variations, str) or not variations.strip():
            raise ConfigError(f"variations={variations!r} must be a path: a .png / .npy image or a folder of them")
        return "variations", None
    if prompt is not None and prompts is not None:
        raise ConfigError("give prompt=... (every sample) or prompts=[...] (one row each), not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt={prompt!r} must be one caption (a string); for several use prompts=[...]")
        return "text", [prompt]
    if prompts is None:
        return "text", [""]  # no caption: the prior's and the decoder's unconditional input
    if isinstance(prompts, str) or not len(prompts) or not all(isinstance(p, str) for p in prompts):
        raise ConfigError(f"prompts={prompts!r} must be a non-empty list of captions, e.g. "
                          "'prompts=[\"a bold digit seven\",\"a thin digit one\"]'")
    return "text", [str(p) for p in prompts]


def sample_unclip(cfg: DictConfig) -> dict[str, Any]:
    """``diffzoo-sample pipeline=unclip``: ``cfg.n`` images, by text → image (``prompt`` / ``prompts``) or as
    variations of the images at ``cfg.variations``; writes ``<out>/grid.png`` and ``<out>/samples.npz`` (images
    uint8 ``[n, H, W, C]``, ``z_i [n, e]``, and ``text [n]`` or ``source [n]`` with ``source_names [S]`` and
    ``source_images`` uint8 ``[S, H, W, C]``), prints and returns a summary."""
    from ..data.caption_preview import save_prompt_rows
    from ..runtime import device_of, run_dir_of
    from ..utils.images import to_uint8
    from ..utils.progress import track
    from .cascade import draw_stage

    use, prompts = _use_of(cfg)
    n, batch_size, seed = int(cfg.n), int(cfg.batch_size), int(cfg.seed)
    if n < 1 or batch_size < 1:
        raise ConfigError(f"n and batch_size must be >= 1, got n={cfg.n}, batch_size={cfg.batch_size}")
    device = device_of(cfg.get("device", "auto"))
    u, info = load_unclip(cfg.pipeline, device, bool(cfg.use_ema), need_prior=use == "text")
    ups = load_upsamplers(cfg.pipeline, u.decoder.data_shape, device, bool(cfg.use_ema))
    extra: dict[str, np.ndarray] = {}
    if use == "variations":
        sources, rows = read_images(cfg.variations, u.decoder.data_shape)
        if n < len(sources):
            raise ConfigError(f"n={n} is below the {len(sources)} images of variations={cfg.variations}: sample i is a "
                              f"variation of image i mod {len(sources)}, so n must be at least {len(sources)}")
        z_src = u.image_embeddings(sources)
        extra = {"source": np.arange(n) % len(sources), "source_names": np.array(rows),
                 "source_images": to_uint8(sources).permute(0, 2, 3, 1).numpy()}
    else:
        rows = prompts
        extra = {"text": np.array([prompts[i % len(prompts)] for i in range(n)])}
    stage_names = ["decoder", *(st.name for st in ups)]
    images: dict[str, list] = {name: [] for name in stage_names}
    z, nfe = [], {}
    starts = range(0, n, batch_size)
    for start in track(starts, total=len(starts), description=f"unclip {use}", enabled=True):
        idx = list(range(start, min(n, start + batch_size)))
        if use == "variations":
            out = u.decode(z_src[[i % len(z_src) for i in idx]], None, idx, seed)
        else:
            out = u.text_to_image([prompts[i % len(prompts)] for i in idx], seed=seed, indices=idx)
        images["decoder"].append(out.images.cpu())
        z.append(out.z_i.cpu())
        nfe = dict(out.nfe)
        # the upsamplers (§2.1): each super-resolves the previous stage's images (clipped to [-1, 1], the images as
        # saved); sample i from (seed, stage, i) only. No labels (unconditional, §2.1); captions to a text stage only
        # (variations: the empty caption, as the decoder gets)
        prev = out.images
        captions = [prompts[i % len(prompts)] if use == "text" else "" for i in idx]
        for st in ups:
            batch = draw_stage(st, idx, seed, prev.clamp(-1, 1), captions=captions if st.takes_text() else None)
            images[st.name].append(batch.x.cpu())
            nfe[st.name] = int(batch.nfe)
            prev = batch.x
    outputs = {name: torch.cat(v) for name, v in images.items()}
    x, z_all = outputs[stage_names[-1]], torch.cat(z)
    if cfg.get("out"):
        out_dir = Path(cfg.out).expanduser().resolve()
    else:
        name = cfg.pipeline.get("name", "unclip")
        out_dir = run_dir_of(cfg.pipeline.decoder.ckpt_path) / "samples" / f"pipeline_{name}_{use}_n{n}_seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    what = "unCLIP " + ("text → image" if use == "text" else "variations")
    nfe_text = ", NFE " + ", ".join(f"{k} {v}" for k, v in nfe.items())
    earlier: dict[str, dict[str, str]] = {}
    # the final resolution in <out>/, every earlier stage in <out>/<stage>/ (as the cascade pipelines write each stage)
    for name in stage_names:
        final = name == stage_names[-1]
        folder = out_dir if final else out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        xs = outputs[name]
        size = _shape_text(xs.shape[-2:])
        title = what + ("" if len(stage_names) == 1 else f", {name} {size}") + nfe_text
        grid = save_prompt_rows(xs[: 8 * len(rows)], rows, folder / "grid.png", title=title,
                                lead=sources if use == "variations" else None)
        np.savez(folder / "samples.npz", images=to_uint8(xs.clamp(-1, 1)).permute(0, 2, 3, 1).numpy(), z_i=z_all.numpy(),
                 **extra)
        if not final:
            earlier[name] = {"grid": str(grid), "npz": str(folder / "samples.npz"), "resolution": size}
    grid, final_size = out_dir / "grid.png", _shape_text(x.shape[-2:])
    summary: dict[str, Any] = {"out": str(out_dir), "grid": str(grid), "npz": str(out_dir / "samples.npz"), "n": n,
                               "use": "text → image" if use == "text" else "variations",
                               ("prompts" if use == "text" else "sources"): rows, "nfe": nfe, **info,
                               "weights": u.decoder.weights_label(bool(cfg.use_ema))}
    if ups:
        summary.update(upsamplers=[st.info for st in ups], resolution=final_size, stages=earlier)
    print("\n".join(f"{k:>15}: {v}" for k, v in summary.items()))
    return summary


def evaluate_unclip(cfg: DictConfig) -> dict[str, Any]:
    """``diffzoo-eval pipeline=unclip`` is not built: refused in one line saying what measures unCLIP."""
    raise ConfigError("diffzoo-eval pipeline=unclip is not available: sample it with diffzoo-sample pipeline=unclip, and "
                      "measure it with the unCLIP claims (python -m diffzoo.claims unclip_best_of_two unclip_variations "
                      "unclip_prior_matters)")
