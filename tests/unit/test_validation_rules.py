"""The rules behind every entry point's validation: what each accepts at its bounds, what it refuses,
and that the message is one line naming the key, the value and what is valid."""

import math

import pytest
from omegaconf import OmegaConf

from diffzoo.errors import ConfigError
from diffzoo.validation.rules import Bool, Checked, Choice, Either, File, Float, Folder, Int, ListOf, Mapping, Pattern, Text
from diffzoo.validation.schemas import SCHEMAS, rule_for, sampler_option_rule, validate_entry


@pytest.mark.parametrize(("rule", "good", "bad"), [
    (Int(lo=1), [1, 2, 10**9], [0, -1, 1.0, True, "1", [1]]),
    (Int(lo=0, hi=3), [0, 3], [-1, 4]),
    (Int(lo=1, also=(-1,)), [-1, 1], [0, -2]),
    (Float(lo=0, hi=1, hi_open=True), [0, 0.0, 0.5, 0.999], [1, 1.0, -1e-9, math.nan, True, "0.5"]),
    (Float(lo=0, lo_open=True), [1e-12, math.inf], [0, 0.0, -math.inf]),
    (Float(lo=0, hi=100, lo_open=True), [100, 1e-3], [0, 100.0001]),
    (Bool(), [True, False], [0, 1, "true"]),
    (Choice(values=("a", "b")), ["a", "b"], ["c", 1, True, ["a"]]),
    (Text(), ["x"], ["", "  ", 3]),
    (Text(empty=True), ["", "x"], [3]),
    (ListOf(item=Int(lo=1), distinct=True), [[1], [1, 2]], [[], [0], [1, 1], "1", 1]),
    (ListOf(item=Float(lo=0, hi=1), nonempty=False), [[], [0.0, 1.0]], [[1.5], ["a"]]),
    (Either(options=(Int(lo=0), ListOf(item=Int(lo=0)))), [0, [1, 2]], [-1, [-1], "a", {"a": 1}]),
    (Mapping(required=("name",)), [{"name": "ddim"}], [{"eta": 0.0}, "ddim"]),
    (Pattern(regex=r"auto|cuda(:\d+)?", words="auto or cuda[:i]"), ["auto", "cuda", "cuda:3"], ["cuda:", "tpu", 3]),
])
def test_rule_accepts_and_refuses(rule, good, bad):
    for value in good:
        assert rule.problem(value) is None, (rule, value)
        rule.check("some.key", value)
    for value in bad:
        assert rule.problem(value) is not None, (rule, value)
        with pytest.raises(ConfigError) as info:
            rule.check("some.key", value)
        message = str(info.value)
        assert message.startswith("some.key=") and "\n" not in message, message


def test_null_only_where_allowed():
    Int(lo=1, null=True).check("k", None)
    with pytest.raises(ConfigError, match=r"^k=null is impossible: it must be a positive integer$"):
        Int(lo=1).check("k", None)
    Checked(by="elsewhere").check("k", object())  # checked elsewhere: nothing to say here


def test_omegaconf_containers_are_checked_as_plain_values():
    ListOf(item=Int(lo=1)).check("steps", OmegaConf.create([1, 2]))
    with pytest.raises(ConfigError, match=r"steps=\[1, 0\] is impossible"):
        ListOf(item=Int(lo=1)).check("steps", OmegaConf.create([1, 0]))


def test_files_and_folders(tmp_path):
    f = tmp_path / "a.ckpt"
    f.write_text("x")
    File().check("ckpt_path", str(f))
    File().check("ckpt_path", f)  # a Path as well as a string
    File(also=("last",)).check("ckpt_path", "last")
    with pytest.raises(ConfigError, match=r"^ckpt_path=.*missing.ckpt: no such file; it must be an existing file$"):
        File().check("ckpt_path", str(tmp_path / "missing.ckpt"))
    with pytest.raises(ConfigError, match=r"ckpt_path=.*: is a directory, not a file"):
        File().check("ckpt_path", str(tmp_path))
    Folder().check("out", str(tmp_path / "new"))  # created when missing
    with pytest.raises(ConfigError, match=r"out=.*a.ckpt: is a file, not a folder"):
        Folder().check("out", str(f))
    with pytest.raises(ConfigError, match=r"no such folder"):
        Folder(exists=True).check("data", str(tmp_path / "new"))


def test_patterns_and_sampler_options():
    assert isinstance(rule_for(SCHEMAS["train"], "perf.channels_last"), Bool)
    assert rule_for(SCHEMAS["train"], "perf.compile_mode") is SCHEMAS["train"]["perf.compile_mode"]  # exact beats pattern
    assert sampler_option_rule("eta", "ddim") == Float()
    assert sampler_option_rule("skip", "ddim").values == ("uniform", "quad")
    assert isinstance(sampler_option_rule("corrector", "unipc"), Bool)  # the same name, another sampler, another type
    assert sampler_option_rule("corrector", None) is None  # the checkpoint's sampler is not known before loading
    assert sampler_option_rule("no_such_option", "ddim") is None


def test_missing_mandatory_and_order(tmp_path):
    from diffzoo.config import compose_config

    with pytest.raises(ConfigError, match=r"^ckpt_path must be set: it has no default"):
        validate_entry("sample", compose_config("sample", []))
    # a wrong value is named before a missing file: the file checks come last
    cfg = compose_config("sample", [f"ckpt_path={tmp_path / 'missing.ckpt'}", "n=0"])
    with pytest.raises(ConfigError, match=r"^n=0 is impossible"):
        validate_entry("sample", cfg)


def test_the_edit_tables_closed_sets_are_its_own():
    from diffzoo.edit import MASKS, TASKS
    from diffzoo.validation.schemas import EDIT_MASKS, EDIT_TASKS

    assert (EDIT_TASKS, EDIT_MASKS) == (TASKS, MASKS)
