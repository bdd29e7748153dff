"""Every user-facing key of every entry point, with what it may be: one table per entry point.

``validate_entry(name, cfg)`` checks a composed config against its table before anything is built
(no checkpoint is read, no data set opened), so ``n=abc``, ``sampler.steps=0`` or a text file given
as ``ckpt_path`` fail in one line naming the key, the value and what is valid. A key is matched
exactly or by a shell-style pattern (``sampler.*``); keys of a node with a ``_target_`` that the
table does not name are checked against the target's annotated parameter types
(:func:`rule_from_target`). The tests walk the composed configs and fail on a key with no rule
here, so a key added later must come with one.
"""

from __future__ import annotations

import fnmatch
import inspect
import types
import typing
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .rules import Bool, Checked, Choice, Either, File, Float, Folder, Int, ListOf, Mapping, Pattern, Rule, Text

__all__ = ["SCHEMAS", "ENTRY_POINTS", "validate_entry", "rule_for", "rule_from_target", "config_leaves", "unruled_keys", "resolved",
           "sampler_option_rule", "SamplerOption"]

from ..denoisers import THRESHOLDS
from ..guidance.classifier import FORMS
from ..metrics.backends import BACKENDS
from ..metrics.classifier import ARCHS
from ..metrics.data import SPLITS
from ..metrics.distributed import SHARD_MODES
from ..metrics.features import EXTRACTOR_KINDS
from ..metrics.likelihood_eval import HUTCHINSON_KINDS, VLB_VARIANCES
from ..metrics.naming import IMAGE_METRICS, LIKELIHOOD_METRICS, TOY_METRICS, TRAJECTORY_METRICS
from ..samplers.ddim import DDIM_SKIPS
from ..samplers.pc import CORRECTORS, PREDICTORS, STEP_NORMS

_SAMPLE_METRICS = (*IMAGE_METRICS, *TOY_METRICS)
_METRICS = (*_SAMPLE_METRICS, *LIKELIHOOD_METRICS, *TRAJECTORY_METRICS)
# diffzoo.edit's closed sets (an entry point, a layer above: tests/unit/test_validation_rules.py keeps them equal)
EDIT_TASKS = ("inpaint", "colorize")
EDIT_MASKS = ("center", "left_half", "random")

CKPT = File(words="an existing .ckpt file written by diffzoo-train", missing="checkpoint not found")
SEED = Int(lo=0)
POSITIVE = Int(lo=1)
OUT = Folder(null=True)
DEVICE = Pattern(regex=r"auto|cpu|gpu|cuda(:\d+)?", words="auto, cpu, gpu, cuda or cuda:<index>")
ACCELERATOR = Choice(values=("auto", "cpu", "gpu", "cuda"))
LABELS = Either(options=(Int(lo=0), ListOf(item=Int(lo=0))), null=True)
PATHS = {"paths.data_dir": Folder(), "paths.log_dir": Folder(), "paths.cache_dir": Folder()}


def _lightning_precisions() -> tuple:
    """The values Lightning's ``Trainer(precision=...)`` takes (the literals of its annotation)."""
    from lightning.fabric.connector import _PRECISION_INPUT

    def literals(t) -> list:
        if typing.get_origin(t) is typing.Literal:
            return list(typing.get_args(t))
        return [v for arg in typing.get_args(t) for v in literals(arg)]

    return tuple(literals(_PRECISION_INPUT))


class SamplerOption(Checked):
    """An option of a sampler (``sampler.eta``): its rule is the annotation of the option in the
    sampler's function (:func:`sampler_option_rule`), and a closed set for the string options below."""


SAMPLER_OPTION = SamplerOption(by="the sampler's signature (its annotated option types)")
SAMPLER_OVERRIDE = {  # a change to the checkpoint's sampler (conf/sampler: a whole sampler's own options)
    "sampler.steps": Int(lo=1, null=True, words="a positive integer (the NFE budget)"),
    "sampler.threshold": Choice(values=THRESHOLDS, null=True),
    "sampler.threshold_percentile": Float(lo=0, hi=100, lo_open=True, null=True),
    "sampler.name": Checked(by="SamplerSpec (sampler=<name>)"),
    "sampler.*": SAMPLER_OPTION,
}
GUIDANCE = {
    "guidance._target_": Checked(by="Hydra (guidance=cfg | classifier | none)"),
    "guidance.scale": Float(lo=0),
    "guidance.classifier_ckpt": File(words="an existing .ckpt of a noise-aware classifier"),
    "guidance.form": Choice(values=FORMS),
    "guidance.clip_ckpt": File(words="an existing .ckpt of a noised CLIP"),
}
FEATURES = {
    "extractor": Choice(values=EXTRACTOR_KINDS), "backend": Choice(values=BACKENDS),
    "reference.split": Choice(values=SPLITS), "reference.n": Int(lo=1, null=True),
    "classifier.epochs": Int(lo=1, null=True),
}
PIPELINE = {"pipeline": Checked(by="diffzoo.pipelines (pipeline=<cascade> | unclip)"), "pipeline.*": Checked(by="diffzoo.pipelines")}
KID = {"kid.subsets": POSITIVE, "kid.subset_size": POSITIVE}
COMMON = {"ckpt_path": CKPT, "seed": SEED, "batch_size": POSITIVE, "use_ema": Bool(), "progress": Bool(), **PATHS}
TABLES = {**COMMON, **FEATURES, **KID, "n": Int(lo=2), "metrics": ListOf(item=Choice(values=_SAMPLE_METRICS), distinct=True),
          "accelerator": ACCELERATOR, "save_samples": Bool(), "out": OUT}

SCHEMAS: dict[str, dict[str, Rule]] = {
    "sample": {
        **COMMON, **SAMPLER_OVERRIDE, **GUIDANCE, "n": POSITIVE, "y": LABELS, "out": OUT, "device": DEVICE,
        "respace": Checked(by="the retired-key check (use sampler.steps)"),
        "prompt": Text(null=True, empty=True, words="one caption (a string; '' is the empty caption)"),
        "prompts": ListOf(item=Text(empty=True, words="a caption"), null=True), **PIPELINE,
        "variations": Text(null=True, words="a .png / .npy image or a folder of them (pipeline=unclip)"),
    },
    "eval": {
        **COMMON, **SAMPLER_OVERRIDE, **FEATURES, **KID, "n": Int(lo=2), "out": OUT,
        "sample_steps": Checked(by="the retired-key check (use sampler.steps)"),
        "metrics": ListOf(item=Choice(values=_METRICS), distinct=True), "is_splits": POSITIVE,
        "precision_recall.k": POSITIVE, "toy.swd_projections": POSITIVE, "toy.mmd_bandwidth": Float(lo=0, lo_open=True),
        "nll.n": Int(lo=1, null=True), "nll.split": Choice(values=SPLITS), "nll.batch_size": POSITIVE,
        "nll.num_levels": Int(lo=2), "nll.hutchinson": Choice(values=HUTCHINSON_KINDS),
        "nll.rtol": Float(lo=0, lo_open=True), "nll.atol": Float(lo=0, lo_open=True), "nll.steps": Int(lo=1, null=True),
        "nll.variance": Choice(values=VLB_VARIANCES, null=True), "nll.clip_x0": Bool(),
        "shard": Choice(values=SHARD_MODES), "devices": POSITIVE, "accelerator": ACCELERATOR,
        "save_samples": Bool(), **PIPELINE,
    },
    "ddim_table": {
        **TABLES, "steps": ListOf(item=POSITIVE, distinct=True), "etas": ListOf(item=Float(lo=0, hi=1), nonempty=False),
        "sigma_hat": Bool(), "skip": Choice(values=DDIM_SKIPS), "clip_x0": Bool(null=True),
    },
    "nfe_table": {
        **TABLES, "nfe": ListOf(item=POSITIVE, distinct=True),
        "samplers": ListOf(item=Either(options=(Text(words="a sampler name"), Mapping(required=("name",))))),
    },
    "edit": {
        **COMMON, "task": Choice(values=EDIT_TASKS), "mask": Choice(values=EDIT_MASKS),
        "mask_fraction": Float(lo=0, hi=1, lo_open=True, hi_open=True), "n": POSITIVE, "split": Choice(values=SPLITS),
        "steps": Checked(by="the retired-key check (use sampler.steps)"), "accelerator": ACCELERATOR, "out": OUT,
        "sampler.steps": SAMPLER_OVERRIDE["sampler.steps"],
        "sampler.predictor": Choice(values=tuple(PREDICTORS), null=True),
        "sampler.corrector": Choice(values=tuple(CORRECTORS), null=True),
        "sampler.snr": Float(lo=0, lo_open=True, null=True), "sampler.n_corrector": Int(lo=0, null=True),
        "sampler.eps": Float(lo=0, hi=1, lo_open=True, hi_open=True, null=True), "sampler.denoise": Bool(null=True),
        "sampler.step_norm": Choice(values=STEP_NORMS, null=True),
    },
    "guidance_sweep": {
        **COMMON, **SAMPLER_OVERRIDE, **GUIDANCE, **FEATURES, "n": Int(lo=2), "y": LABELS, "device": DEVICE,
        "respace": Checked(by="the retired-key check (use sampler.steps)"),
        "metrics": ListOf(item=Choice(values=IMAGE_METRICS), distinct=True), "is_splits": POSITIVE,
        "sweep_dir": Folder(null=True),
    },
    "train_classifier": {
        "seed": SEED, "arch": Choice(values=ARCHS), "epochs": Int(lo=1, null=True), "force": Bool(), **PATHS,
        "data._target_": Checked(by="Hydra (data=digits | fashion_mnist | ...)"),
    },
    "reproduce": {  # the argparse arguments (its key=value overrides are diffzoo-train's)
        "experiment": Text(words="an experiment name (conf/experiment/<name>.yaml)"),
        "data_dir": Folder(exists=True, null=True, words="an existing folder with the data set"),
        "smoke": Bool(),
    },
    "train": {  # keys of a node with a _target_ not named here: the target's annotated types
        "task_name": Text(), "name": Text(words="a run name"), "seed": SEED,
        "ckpt_path": File(null=True, also=("last",), words="an existing .ckpt file"), "run_dir": Folder(null=True),
        "run_id": Text(null=True), "resume": Choice(values=("auto", "never", "must")), "optimized_metric": Text(null=True),
        "final_samples": Int(lo=0, null=True), "tags": ListOf(item=Text(), nonempty=False, null=True),
        **{k: Checked(by="the retired-key check (use sampler.steps)") for k in ("final_sample_steps", "respace", "sample_steps")},
        "*._target_": Checked(by="Hydra (the config group's options)"), "*._partial_": Checked(by="Hydra"),
        "sampler.name": SAMPLER_OVERRIDE["sampler.name"], "sampler.steps": SAMPLER_OVERRIDE["sampler.steps"],
        "sampler.*": SAMPLER_OPTION,
        "ema.decay": Float(lo=0, hi=1, hi_open=True, null=True), "ema.warmup": Bool(),
        # the data modules' loader settings (diffzoo.data.base, passed on as **loader)
        "data.batch_size": POSITIVE, "data.eval_batch_size": Int(lo=1, null=True), "data.num_workers": Int(lo=0),
        "data.pin_memory": Bool(), "data.persistent_workers": Bool(), "data.seed": SEED,
        # ranges of the keys most often changed (the others inside a _target_ node: their annotated type)
        **{f"net.{k}": POSITIVE for k in ("in_channels", "out_channels", "image_size", "base_channels", "num_res_blocks",
                                         "num_heads", "num_groups")},
        "net.dropout": Float(lo=0, hi=1, hi_open=True), "net.num_classes": Int(lo=1, null=True),
        "data.image_size": POSITIVE, "schedule.betas.T": POSITIVE, "lr_scheduler.warmup_steps": Int(lo=0),
        "callbacks.*.every_n_steps": Int(lo=1, null=True), "callbacks.sample_grid.n": Int(lo=0),
        "callbacks.evaluation.n": Int(lo=2), "callbacks.evaluation.batch_size": POSITIVE,
        "*resolutions": ListOf(item=POSITIVE, nonempty=False), "*channel_mult": ListOf(item=POSITIVE),
        "*ch_mult": ListOf(item=POSITIVE), "net.fir_kernel": ListOf(item=POSITIVE), "*image_tower.widths": ListOf(item=POSITIVE),
        "*._convert_": Checked(by="Hydra"), "*._recursive_": Checked(by="Hydra"),
        "data.params.noise": Float(lo=0), "data.params.standardize": Bool(), "data.theta": ListOf(item=Float()),
        "model.augmentation.blur": Mapping(null=True), "model.augmentation.blur.sigma": ListOf(item=Float(lo=0)),
        "model.augmentation.noise.process": Mapping(null=True),
        "model.augmentation.noise.train_levels": ListOf(item=Float(lo=0, hi=1)),
        "model.grid.bins": ListOf(item=POSITIVE), "model.grid.range*": ListOf(item=Float()),
        "model.paper_values.*": Float(), "model.prior_var": ListOf(item=Float(lo=0, lo_open=True)),
        "model.reflow_sampler.name": SAMPLER_OVERRIDE["sampler.name"], "model.reflow_sampler.*": SAMPLER_OPTION,
        "schedule.prior_range": ListOf(item=Float()), "schedule.sigmas": ListOf(item=Float(lo=0, lo_open=True), null=True),
        "trainer.val_check_interval": Either(options=(POSITIVE, Float(lo=0, hi=1, lo_open=True)), null=True),
        "optimizer.lr": Float(lo=0, lo_open=True), "optimizer.weight_decay": Float(lo=0), "optimizer.eps": Float(lo=0, lo_open=True),
        "optimizer.betas": ListOf(item=Float(lo=0, hi=1, hi_open=True)),
        # Lightning's Trainer (its annotations are unions the rules do not read)
        "trainer.accelerator": Choice(values=("auto", "cpu", "gpu", "cuda", "mps", "tpu")),
        "trainer.devices": Either(options=(Int(lo=1, also=(-1,)), ListOf(item=Int(lo=0)), Choice(values=("auto",)))),
        "trainer.fast_dev_run": Either(options=(Bool(), Int(lo=1))),
        "trainer.precision": Choice(values=_lightning_precisions()),
        "trainer.strategy": Text(), "trainer.num_nodes": POSITIVE, "trainer.accumulate_grad_batches": POSITIVE,
        "perf.*": Bool(), "perf.compile_mode": Choice(values=("default", "reduce-overhead", "max-autotune",
                                                               "max-autotune-no-cudagraphs")),
        "perf.matmul_precision": Choice(values=("highest", "high", "medium")),
        "callbacks.model_checkpoint.dirpath": Folder(null=True),
        "callbacks.model_checkpoint.save_last": Either(options=(Bool(), Choice(values=("link",))), null=True),
        "callbacks.evaluation.metrics": ListOf(item=Choice(values=_METRICS), distinct=True, null=True),
        "callbacks.evaluation.sampler.steps": SAMPLER_OVERRIDE["sampler.steps"],
        "callbacks.evaluation.sampler.*": SAMPLER_OPTION,
        "callbacks.preemption.signals": ListOf(item=Text(), nonempty=False),
        "logger.wandb.tags": ListOf(item=Text(), nonempty=False, null=True), "logger.wandb.save_dir": Folder(null=True),
        "logger.wandb.offline": Bool(), "logger.wandb.log_model": Either(options=(Bool(), Choice(values=("all",)))),
        **{f"logger.wandb.{k}": Text(null=True) for k in ("project", "name", "group", "job_type", "id", "entity", "resume")},
        **PATHS,
        **{group: Checked(by="Hydra: a config group, null when switched off") for group in (
            "net", "schedule", "objective", "sampler", "model", "optimizer", "lr_scheduler", "ema", "parameterization",
            "text_encoder", "first_stage", "logger", "callbacks", "data")},
        **{f"callbacks.{name}": Checked(by="Hydra: a callback, null when switched off") for name in (
            "model_checkpoint", "sample_grid", "progress", "throughput", "evaluation", "preemption", "nan_guard")},
    },
}
# which module validates against which table (a test finds every command line and checks this list)
ENTRY_POINTS = {"sample": "diffzoo.sample", "eval": "diffzoo.evaluate", "ddim_table": "diffzoo.ddim_table",
                "nfe_table": "diffzoo.nfe_table", "edit": "diffzoo.edit", "guidance_sweep": "diffzoo.guidance_sweep",
                "train_classifier": "diffzoo.metrics.train_classifier", "reproduce": "diffzoo.reproduce",
                "train": "diffzoo.train"}


def rule_for(schema: dict[str, Rule], key: str) -> Rule | None:
    """The rule of ``key``: its own entry, else the first pattern that matches it."""
    if key in schema:
        return schema[key]
    for pattern, rule in schema.items():
        if "*" in pattern and fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


def _from_annotation(annotation, default) -> Rule | None:
    """A rule from a parameter's type annotation: int, float, bool, str, Literal, their Optional."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    null = default is None
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        null = null or len(rest) < len(args)
        if len(rest) == 1:
            return _from_annotation(rest[0], None if null else default)
        if set(rest) == {int, float}:
            return Float(null=null)
        return None
    if origin is typing.Literal:
        return Choice(values=tuple(args), null=null)
    simple = {bool: Bool, int: Int, float: Float, str: Text}
    if annotation in simple:
        return simple[annotation](null=null)
    return None


# targets that pass their **kwargs on to another one (its parameters are theirs)
FORWARDS_KWARGS = {"diffzoo.networks.inpainting.InpaintingUNet": "diffzoo.networks.unet.UNet"}


@lru_cache(maxsize=None)
def _target_hints(target: str) -> dict[str, tuple[Any, Any]]:
    """``{parameter: (annotation, default)}`` of ``target``; a class's **kwargs read on in its bases."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:  # noqa: BLE001 - an unimportable target fails with Hydra's own message later
        return {}
    found: dict[str, tuple[Any, Any]] = {}
    for fn in [c.__dict__["__init__"] for c in obj.__mro__ if "__init__" in c.__dict__] if inspect.isclass(obj) else [obj]:
        hints = _hints_of(fn)
        found.update({n: h for n, h in hints.items() if n not in found})
        if not hints or not _takes_kwargs(fn):
            break
    if target in FORWARDS_KWARGS:
        found = {**_target_hints(FORWARDS_KWARGS[target]), **found}
    return found


def _hints_of(fn) -> dict[str, tuple[Any, Any]]:
    """``{parameter: (annotation, default)}`` of a function (empty when unreadable)."""
    try:
        hints, params = typing.get_type_hints(fn), inspect.signature(fn).parameters
    except Exception:  # noqa: BLE001 - unreadable annotations: no rule from them
        return {}
    return {n: (hints[n], p.default) for n, p in params.items() if n in hints}


def _takes_kwargs(fn) -> bool:
    try:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


def rule_from_target(target: str, param: str) -> Rule | None:
    """The rule of parameter ``param`` of ``target`` (a class or function) from its annotation, or
    ``None`` when it has none the rules can read."""
    hint = _target_hints(target).get(param)
    return None if hint is None else _from_annotation(*hint)


def _sampler_choices() -> dict[str, tuple]:
    """String options of the samplers whose values form a closed set (their modules' tables)."""
    from ..samplers.ddpm import VARIANCES
    from ..samplers.grids import GRIDS
    from ..samplers.ode import ODE_METHODS
    from ..samplers.unipc import UNIPC_VARIANTS

    return {"variance": VARIANCES, "skip": DDIM_SKIPS, "grid": (*GRIDS, "auto"), "method": ODE_METHODS,
            "predictor": tuple(PREDICTORS), "corrector": tuple(CORRECTORS), "variant": UNIPC_VARIANTS}


def sampler_option_rule(option: str, sampler: str | None) -> Rule | None:
    """The rule of ``option`` of sampler ``sampler`` (``None``: the checkpoint's own, not known before
    loading — then the rule every sampler with that option agrees on, if they do)."""
    from ..samplers.spec import SAMPLERS

    names = [sampler] if sampler in SAMPLERS else list(SAMPLERS)
    found = {}
    for name in names:
        hint = _hints_of(SAMPLERS[name].core).get(option)
        if hint is not None:
            rule = _from_annotation(*hint)
            if isinstance(rule, Text) and option in _sampler_choices():
                rule = Choice(values=_sampler_choices()[option], null=rule.null)
            found[repr(rule)] = rule
    return next(iter(found.values())) if len(found) == 1 else None


def config_leaves(cfg: DictConfig, prefix: str = "", schema: dict[str, Rule] | None = None):
    """Yield ``(dotted key, node, target of the enclosing node)`` for every leaf of ``cfg`` (``"???"``
    for a missing value; a list is a leaf; so is a mapping that ``schema`` gives a rule of its own,
    other than :class:`Checked`), ``hydra`` left out."""
    target = cfg.get("_target_") if "_target_" in cfg else None
    for key in cfg:
        if not prefix and key == "hydra":
            continue
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            yield full, "???", target
            continue
        value = cfg._get_node(key)
        if OmegaConf.is_interpolation(cfg, key) and isinstance(cfg[key], DictConfig):
            continue  # a copy of another node (``tokenizer.data: ${data}``), checked where it is defined
        own = rule_for(schema, full) if schema is not None else None
        if isinstance(value, DictConfig) and not value._is_none() and (own is None or isinstance(own, Checked)):
            yield from config_leaves(cfg[key], f"{full}.", schema)
        else:
            yield full, value, target


_ABSENT = object()


def unruled_keys(name: str, cfg: DictConfig) -> list[str]:
    """Keys of ``cfg`` that neither the table of ``name`` nor their target's annotations give a rule."""
    schema = SCHEMAS[name]
    return [key for key, _, target in config_leaves(cfg, schema=schema)
            if rule_for(schema, key) is None and (target is None or rule_from_target(str(target), key.rsplit(".", 1)[-1]) is None)]


def resolved(cfg: DictConfig) -> dict:
    """``cfg`` resolved into plain containers (a missing value stays ``"???"``); an interpolation that
    cannot be resolved is a one-line :class:`ConfigError` naming its key."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"{key or 'the config'}: {next(iter(str(e).splitlines()), type(e).__name__)}") from None


def _plain_leaves(data: dict, schema: dict[str, Rule], prefix: str = ""):
    """:func:`config_leaves` over plain containers: ``(key, value, target)``."""
    target = data.get("_target_")
    for key, value in data.items():
        full = f"{prefix}{key}"
        if not prefix and key == "hydra":
            continue
        own = rule_for(schema, full)
        if isinstance(value, dict) and (own is None or isinstance(own, Checked)):
            yield from _plain_leaves(value, schema, f"{full}.")
        else:
            yield full, value, target


def _parent(data: dict, key: str) -> dict:
    node = data
    for part in key.split(".")[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def validate_entry(name: str, cfg: DictConfig, data: dict | None = None) -> None:
    """Check ``cfg`` (the composed config of entry point ``name``; ``data``: it resolved, if at hand)
    against :data:`SCHEMAS`, files and folders last, so that a wrong value elsewhere is named first.
    Raises a one-line :class:`ConfigError`."""
    schema = SCHEMAS[name]
    checks: list[tuple[str, Rule, Any]] = []
    data = resolved(cfg) if data is None else data
    for key, value, target in _plain_leaves(data, schema):
        rule = rule_for(schema, key)
        if isinstance(rule, SamplerOption):
            rule = sampler_option_rule(key.rsplit(".", 1)[-1], _parent(data, key).get("name"))
        if rule is None and isinstance(target, str):
            rule = rule_from_target(target, key.rsplit(".", 1)[-1])
        if rule is None:
            continue
        if isinstance(value, str) and value == "???":
            raise ConfigError(f"{key} must be set: it has no default; it must be {rule.valid_text()}")
        checks.append((key, rule, value))
    checks.sort(key=lambda c: isinstance(c[1], (File, Folder)))
    for key, rule, value in checks:
        rule.check(key, value)
