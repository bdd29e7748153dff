"""Bad input at every entry point gets one line, exit status 2 and no traceback (issue 20).

The table-driven part cannot go stale: for each entry point it composes the shipped config, walks
every key (so a key added later is covered as soon as it exists), fails when a key has no rule in
``diffzoo.validation.schemas.SCHEMAS`` (or in its target's annotations), and feeds each key bad
values made from its rule — wrong type, null, zero, negative, out of range, unknown choice, a
missing file, a directory where a file is expected, a file where a folder is expected. These run
in-process (the entry point's function on the composed config, as its ``main`` calls it); a few run
through the real ``main`` with ``argv`` and a few through the console scripts, to show that Hydra's
parsing of the command line gives the same values and the same line.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from diffzoo.config import CONFIG_DIR, compose_config
from diffzoo.errors import run_reporting_errors
from diffzoo.validation import rules as R
from diffzoo.validation.schemas import (SCHEMAS, SamplerOption, config_leaves, resolved, rule_for, rule_from_target,
                                       sampler_option_rule, unruled_keys)

# entry point → (module, function its main runs, config name)
ENTRIES = {
    "sample": ("diffzoo.sample", "sample", "sample"),
    "eval": ("diffzoo.evaluate", "evaluate", "eval"),
    "ddim_table": ("diffzoo.ddim_table", "ddim_table", "ddim_table"),
    "nfe_table": ("diffzoo.nfe_table", "nfe_table", "nfe_table"),
    "edit": ("diffzoo.edit", "edit", "edit"),
    "guidance_sweep": ("diffzoo.guidance_sweep", "sweep", "guidance_sweep"),
    "train_classifier": ("diffzoo.metrics.train_classifier", "run", "train_classifier"),
    "train": ("diffzoo.train", "train", "train"),
}
_MISSING = object()
# what each entry point calls first once its config is validated: stubbed in the bad-value test, so
# a bad value that gets through is reported at once instead of loading, training or sampling
AFTER_VALIDATION = {
    "sample": "diffzoo.runtime.load_for_sampling", "eval": "diffzoo.runtime.load_for_sampling",
    "guidance_sweep": "diffzoo.runtime.load_for_sampling", "ddim_table": "diffzoo.lit.build.load_module",
    "nfe_table": "diffzoo.lit.build.load_module", "edit": "diffzoo.lit.build.load_module",
    "train_classifier": "diffzoo.metrics.classifier.classifier_path", "train": "diffzoo.train.resolve_run_dir",
}


class PassedValidation(Exception):
    """Raised by the stub of :data:`AFTER_VALIDATION`: the config was accepted."""


def _accepted(*args, **kwargs):
    raise PassedValidation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A file that stands in for a checkpoint (validation reads none), a folder, a missing path."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "stand_in.ckpt").write_text("validation runs before any checkpoint is read\n")
    (root / "a_folder").mkdir()
    return {"file": str(root / "stand_in.ckpt"), "dir": str(root / "a_folder"), "missing": str(root / "no" / "such.ckpt"),
            "out": str(root / "out")}


def _base_overrides(name: str, files: dict) -> list[str]:
    """What the entry point needs on top of its config (``ckpt_path`` has no default)."""
    if name in ("train", "train_classifier"):
        return [f"paths.log_dir={files['out']}"]
    return [f"ckpt_path={files['file']}", f"out={files['out']}"] if name not in ("guidance_sweep",) else \
        [f"ckpt_path={files['file']}", f"sweep_dir={files['out']}"]


# config variants whose optional groups bring more keys (each must have its rules too)
VARIANTS = {
    "sample": [[], ["guidance=cfg"], ["guidance=classifier", "guidance.classifier_ckpt={file}"], ["sampler=ddim"],
               ["sampler=pc"], ["sampler=unipc"], ["sampler=ode"], ["guidance=clip", "guidance.clip_ckpt={file}"]],
    "guidance_sweep": [[], ["guidance=classifier", "guidance.classifier_ckpt={file}"]],
    "eval": [[], ["sampler=ddpm"]],
}


def _compose(name: str, files: dict, variant=()):
    extra = [v.format(**files) for v in variant]
    overrides = _base_overrides(name, files) + extra
    return compose_config(ENTRIES[name][2], overrides)


def _rule(name: str, key: str, target, cfg=None) -> R.Rule | None:
    rule = rule_for(SCHEMAS[name], key)
    if isinstance(rule, SamplerOption):  # the option's rule in the sampler the config names
        parent = OmegaConf.select(cfg, key.rsplit(".", 1)[0]) if cfg is not None and "." in key else None
        return sampler_option_rule(key.rsplit(".", 1)[-1], parent.get("name") if parent is not None else None) or rule
    if rule is None and target is not None:
        rule = rule_from_target(str(target), key.rsplit(".", 1)[-1])
    return rule


# ---------------------------------------------------------------- bad values from a rule
def _scalar_bad(rule: R.Rule, files: dict) -> list:
    """Python values the rule must refuse (null included when the rule does not take it)."""
    out: list = [] if rule.null else [None]
    if isinstance(rule, R.Checked):
        return []
    if isinstance(rule, R.Int):
        out += ["abc", 1.5, True]
        if rule.lo is not None:
            out += [v for v in (rule.lo - 1, 0, -3) if v < rule.lo and v not in rule.also]
        if rule.hi is not None:
            out.append(rule.hi + 1)
    elif isinstance(rule, R.Float):
        out += ["abc", True]
        if rule.lo is not None:
            out.append(rule.lo if rule.lo_open else rule.lo - 1)
        if rule.hi is not None:
            out.append(rule.hi if rule.hi_open else rule.hi + 1)
    elif isinstance(rule, R.Bool):
        out += ["abc", 3]
    elif isinstance(rule, R.Choice):
        out += ["no_such_choice", [1]]
    elif isinstance(rule, R.Text):
        out += ([] if rule.empty else [""]) + [[1, 2]]
    elif isinstance(rule, R.File):
        out += [files["missing"], files["dir"], 3]
    elif isinstance(rule, R.Folder):
        out += [files["file"], 3] + ([files["missing"]] if rule.exists else [])
    elif isinstance(rule, R.ListOf):
        out += ["abc", 3] + ([[]] if rule.nonempty else [])
        out += [[v] for v in _scalar_bad(rule.item, files) if v is not None and not isinstance(v, list)][:2]
        if rule.distinct:
            good = _a_good_item(rule.item)
            if good is not _MISSING:
                out.append([good, good])
    elif isinstance(rule, R.Either):
        out += [v for v in ("abc", -7, 1.5, [[]], {"a": 1}) if all(o.problem(v) is not None for o in rule.options)]
    elif isinstance(rule, R.Mapping):
        out += ["abc", 3]
    elif isinstance(rule, R.Pattern):
        out += ["no such thing", 3]
    else:
        raise AssertionError(f"the test makes no bad values for {type(rule).__name__}: add them here")
    return out


def _a_good_item(rule: R.Rule):
    if isinstance(rule, R.Int):
        return rule.lo if rule.lo is not None else 0
    if isinstance(rule, R.Choice):
        return rule.values[0]
    if isinstance(rule, R.Float):
        return rule.hi if rule.hi is not None and not rule.hi_open else (rule.lo or 0) + 0.5
    return _MISSING


def _override(key: str, value) -> str:
    """``key=value`` as typed on the command line."""
    def text(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(text(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ",".join(f"{k}:{text(x)}" for k, x in v.items()) + "}"
        if isinstance(v, str):
            return "''" if v == "" else (f"'{v}'" if " " in v else v)
        return repr(v)

    return f"{key}={text(value)}"


def _run(fn, cfg, capsys) -> tuple[int | None, str]:
    """Run ``fn(cfg)`` as ``main`` does; return (exit status, stderr)."""
    capsys.readouterr()
    try:
        run_reporting_errors(fn, cfg)
        code = None
    except SystemExit as e:
        code = e.code
    except PassedValidation:
        code = "accepted (validation let it through)"
    except Exception as e:  # noqa: BLE001 - reported as a failure of this value
        code = f"{type(e).__name__}: {str(e)[:200]}"
    return code, capsys.readouterr().err


def _one_line_naming(key: str, code, err: str) -> str | None:
    """What is wrong with the answer, or ``None`` when it is one ``error:`` line naming ``key``."""
    lines = err.strip().splitlines()
    if code != 2:
        return f"exit status {code}, stderr {err[-300:]!r}"
    if "Traceback" in err or len(lines) != 1 or not lines[0].startswith("error: "):
        return f"not one 'error:' line: {err[-300:]!r}"
    if key not in lines[0]:
        return f"the line does not name {key}: {lines[0]!r}"
    return None


# ---------------------------------------------------------------- every key has a rule
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_key_of_every_entry_point_has_a_rule(name, files):
    for variant in VARIANTS.get(name, [[]]):
        cfg = _compose(name, files, variant)
        missing = unruled_keys(name, cfg)
        assert not missing, (f"{ENTRIES[name][0]} ({' '.join(variant) or 'default config'}): no rule for {missing}; add one "
                             f"to diffzoo.validation.schemas.SCHEMAS[{name!r}] (type, range / choices, file / folder), or "
                             "annotate the parameter of its _target_")


@pytest.mark.slow
def test_every_key_of_every_experiment_has_a_rule_and_a_valid_default():
    from diffzoo.validation import validate_config

    experiments = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
    missing = {}
    for e in experiments:
        cfg = compose_config("train", [f"experiment={e}"])
        validate_config(cfg)  # a shipped recipe passes its own rules
        missing[e] = unruled_keys("train", cfg)
    missing = {e: keys for e, keys in missing.items() if keys}
    assert not missing, f"keys with no rule (add them to diffzoo.validation.schemas.SCHEMAS['train']): {missing}"


# command lines outside the issue's list, with their own argument checks (argparse)
NOT_ENTRY_POINTS = {"diffzoo.claims.runner"}


def test_every_command_line_has_a_table_and_validates_against_it():
    """A new tool (a module with ``@hydra.main`` or an argparse parser) must get a table in SCHEMAS,
    be listed in ENTRY_POINTS and call ``validate_entry`` with its name; so must this test's ENTRIES."""
    from diffzoo.validation.schemas import ENTRY_POINTS

    root = Path(CONFIG_DIR).parent
    tools = {".".join(("diffzoo", *p.relative_to(root).with_suffix("").parts)) for p in root.rglob("*.py")
             if "@hydra.main(" in p.read_text() or "argparse.ArgumentParser(" in p.read_text()}
    assert tools - NOT_ENTRY_POINTS == set(ENTRY_POINTS.values()), "add the new tool to validation.schemas.ENTRY_POINTS / SCHEMAS"
    assert set(ENTRY_POINTS) == set(SCHEMAS) == set(ENTRIES) | {"reproduce"}
    for name, module in ENTRY_POINTS.items():
        source = (root / Path(*module.split(".")[1:])).with_suffix(".py").read_text()
        call = "validate_config(" if name == "train" else ("check_arguments(" if name == "reproduce" else f'validate_entry("{name}"')
        assert call in source, f"{module} does not call {call}...)"
        assert name == "reproduce" or ENTRIES[name][0] == module


def test_reproduce_arguments_have_rules():
    from diffzoo.reproduce import build_parser

    dests = {a.dest for a in build_parser()._actions if a.dest != "help"}
    assert dests <= set(SCHEMAS["reproduce"]), f"add rules for {dests - set(SCHEMAS['reproduce'])} to SCHEMAS['reproduce']"


# ---------------------------------------------------------------- every key refuses bad values
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_bad_values_of_every_key_give_one_line(name, files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(ENTRIES[name][0])
    fn = getattr(module, ENTRIES[name][1])
    monkeypatch.setattr(AFTER_VALIDATION[name], _accepted)
    failures, cases = [], 0
    for variant in VARIANTS.get(name, [[]]):
        composed = _compose(name, files, variant)
        # the composed config, interpolations resolved once (resolving them is not under test here and
        # costs more than the validation); each bad value is set in place and the good one put back
        cfg = OmegaConf.create(resolved(composed))
        for key, _, target in list(config_leaves(composed, schema=SCHEMAS[name])):
            rule = _rule(name, key, target, cfg)
            assert rule is not None, f"{key}: no rule (see test_every_key_of_every_entry_point_has_a_rule)"
            good = OmegaConf.select(cfg, key, throw_on_missing=False)
            good = OmegaConf.to_container(good) if OmegaConf.is_config(good) else good
            for bad in _scalar_bad(rule, files):
                with open_dict(cfg):
                    OmegaConf.update(cfg, key, bad, merge=False, force_add=True)
                code, err = _run(fn, cfg, capsys)
                with open_dict(cfg):
                    OmegaConf.update(cfg, key, good, merge=False, force_add=True)
                cases += 1
                problem = _one_line_naming(key, code, err)
                if problem:
                    failures.append(f"{_override(key, bad)}: {problem}")
    assert cases > 0
    assert not failures, f"{len(failures)} of {cases} bad values were not refused in one line:\n" + "\n".join(failures[:40])


# ---------------------------------------------------------------- the real command lines
MAIN_CASES = [  # (module, argv, the key the line must name)
    ("diffzoo.sample", ["ckpt_path={dir}"], "ckpt_path"),
    ("diffzoo.sample", ["y=[1,abc]"], "y"),
    ("diffzoo.evaluate", ["n=0"], "n"),
    ("diffzoo.evaluate", ["metrics=[fid,nope]"], "metrics"),
    ("diffzoo.ddim_table", ["etas=[0.0,1.5]"], "etas"),
    ("diffzoo.nfe_table", ["nfe=[5,0]"], "nfe"),
    ("diffzoo.nfe_table", ["samplers=[ddim,{{name:ddpm,variance:bogus}}]"], "ddpm.variance"),
    ("diffzoo.nfe_table", ["samplers=[{{name:ddim,eta:abc}}]"], "ddim.eta"),
    ("diffzoo.edit", ["mask_fraction=1.0"], "mask_fraction"),
    ("diffzoo.guidance_sweep", ["guidance.scale=-1"], "guidance.scale"),
    ("diffzoo.metrics.train_classifier", ["epochs=0"], "epochs"),
    ("diffzoo.train", ["net.base_channels=abc"], "net.base_channels"),
]


@pytest.mark.parametrize(("module", "argv", "key"), MAIN_CASES, ids=[f"{m.split('.')[-1]}:{' '.join(a)}" for m, a, _ in MAIN_CASES])
def test_main_with_argv(module, argv, key, files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    name = next(n for n, (m, _, _) in ENTRIES.items() if m == module)
    base = [o for o in _base_overrides(name, files) if o.split("=")[0] not in {a.split("=")[0] for a in argv}]
    monkeypatch.setattr(sys, "argv", [module, *base, *[a.format(**files) for a in argv]])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main()
    problem = _one_line_naming(key, info.value.code, capsys.readouterr().err)
    assert problem is None, problem


def test_reproduce_arguments(files, capsys, tmp_path, monkeypatch):
    from diffzoo.reproduce import main

    monkeypatch.chdir(tmp_path)
    for argv, key in ((["no_such_experiment", "--smoke"], "experiment"), (["ddpm_digits", "--data-dir", files["missing"]], "--data-dir"),
                      (["ddpm_digits", "--data-dir", files["file"]], "--data-dir"), (["ddpm_digits", "--smoke", "seed=-1"], "seed"),
                      (["ddpm_digits", "--smoke", "no_such_key=1"], "no_such_key")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        problem = _one_line_naming(key, info.value.code, capsys.readouterr().err)
        assert problem is None, (argv, problem)


def _script(name: str) -> str | None:
    found = Path(sys.executable).parent / name
    return str(found) if found.is_file() else shutil.which(name)


@pytest.mark.parametrize(("script", "args", "key"), [  # each starts a Python with torch (~30 s on a busy 2-core machine)
    pytest.param("diffzoo-sample", ["n=abc"], "n", marks=pytest.mark.slow),
    pytest.param("diffzoo-eval", ["n=0"], "n", marks=pytest.mark.slow),
    pytest.param("diffzoo-train", ["data.batch_size=-3"], "data.batch_size", marks=pytest.mark.slow),
])
def test_console_scripts_answer_the_same(script, args, key, files, tmp_path):
    exe = _script(script)
    if exe is None:
        pytest.skip(f"{script} is not installed (pip install -e .)")
    name = {"diffzoo-sample": "sample", "diffzoo-eval": "eval", "diffzoo-train": "train"}[script]
    proc = subprocess.run([exe, *_base_overrides(name, files), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    problem = _one_line_naming(key, proc.returncode, proc.stderr)
    assert problem is None, problem


# ---------------------------------------------------------------- the issue's rows, on a real checkpoint
@pytest.fixture(scope="module")
def ddpm_ckpt(tmp_path_factory):
    """An unconditional digits DDPM checkpoint as diffzoo-train writes it (not trained: the rows fail
    before or right after loading)."""
    from tests.integration.test_eval_cli import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ddpm") / "run" / "checkpoints" / "last.ckpt")


ISSUE_ROWS = [  # (argv after ckpt_path, what the one line must say)
    (["n=abc"], "n='abc' is impossible: it must be a positive integer"),
    (["n=-3"], "n=-3 is impossible: it must be a positive integer"),
    (["sampler=ddim", "sampler.steps=0"], "sampler.steps=0 is impossible: it must be a positive integer"),
    (["y=42"], "y=42 is given but the model is unconditional and no guidance is set"),
    (["prompt='a bold seven'"], "prompt is given but this model takes no text"),
]


@pytest.mark.parametrize(("argv", "message"), ISSUE_ROWS, ids=[" ".join(a) for a, _ in ISSUE_ROWS])
def test_issue_rows_on_a_real_checkpoint(argv, message, ddpm_ckpt, capsys, monkeypatch, tmp_path):
    from diffzoo.sample import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["diffzoo-sample", f"ckpt_path={ddpm_ckpt}", f"out={tmp_path / 'out'}", "device=cpu", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert message in err, err
    assert not (tmp_path / "out" / "samples.npz").exists()  # refused, not ignored


def test_a_text_file_as_checkpoint_is_named_as_such(tmp_path, capsys, monkeypatch):
    from diffzoo.sample import main

    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not a checkpoint\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["diffzoo-sample", f"ckpt_path={notes}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{notes} is not a torch checkpoint" in err and "code execution" not in err


def test_a_checkpoint_of_another_model_kind(ddpm_ckpt, tmp_path):
    """A DDPM checkpoint given to a classifier run: named as another model kind, not as a weight mismatch."""
    from diffzoo.errors import CheckpointError
    from diffzoo.train import train
    from tests.helpers import TINY, compose_train

    cfg = compose_train(["experiment=adm_classifier_digits", *TINY, f"ckpt_path={ddpm_ckpt}"], run_dir=tmp_path / "cls")
    with pytest.raises(CheckpointError, match=r"is of another model kind: it holds a DiffusionModule .*builds a NoisyClassifierModule"):
        train(cfg)


def test_a_class_outside_a_conditional_model_is_one_line(tmp_path, capsys, monkeypatch):
    """y=42 for a model with 10 classes: refused before sampling, not an index error inside it."""
    import torch

    from diffzoo.lit.build import build_module
    from diffzoo.sample import main
    from tests.integration.test_eval_cli import tiny_run_config

    cfg = tiny_run_config()
    cfg["model"]["conditional"] = True
    cfg["net"]["num_classes"] = 10
    module = build_module(OmegaConf.create(cfg), (1, 8, 8))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": module.state_dict(), "global_step": 1,
                "diffzoo": {"config": module.run_config, "data_shape": [1, 8, 8], "wandb_run_id": None}}, ckpt)
    monkeypatch.chdir(tmp_path)
    for y, message in (("42", "y=[42]: classes must lie in [0, 9]"), ("[3,10]", "y=[3, 10]: classes must lie in [0, 9]")):
        monkeypatch.setattr(sys, "argv", ["diffzoo-sample", f"ckpt_path={ckpt}", f"y={y}", "device=cpu", f"out={tmp_path / 'o'}"])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main()
        err = capsys.readouterr().err
        assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
