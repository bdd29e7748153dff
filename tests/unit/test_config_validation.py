"""Unknown keys and impossible values are refused in one line that names the key."""

import pytest

from diffzoo.errors import ConfigError
from diffzoo.validation import validate_config
from tests.helpers import compose_train


def test_default_config_is_valid():
    validate_config(compose_train([]))


@pytest.mark.parametrize(("override", "message"), [
    ("+trainer.max_step=10", r"unknown config key 'trainer.max_step' .*did you mean max_steps"),
    ("+model.ema_decya=0.9", r"unknown config key 'model.ema_decya' .*did you mean ema_decay"),
    ("+sed=3", r"unknown config key 'sed' \(top level of train.yaml\); did you mean seed"),
    ("ema.decay=1.5", r"ema.decay=1.5 is impossible: it must be a number in \[0, 1\)"),
    ("trainer.max_steps=-5", r"trainer.max_steps=-5 is impossible: it must be a positive integer, or -1"),
    ("data.batch_size=0", r"data.batch_size=0 is impossible"),
    ("resume=sometimes", r"resume='sometimes' is impossible: it must be one of auto, never, must"),
    ("callbacks.nan_guard.action=ignore", r"callbacks.nan_guard.action='ignore' is impossible"),
])
def test_bad_config_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_train([override]))


def test_cli_prints_one_line(tmp_path):
    from tests.helpers import run_cli

    proc = run_cli("diffzoo.train", ["+trainer.max_step=10"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: unknown config key 'trainer.max_step'" in proc.stderr


def test_a_cosine_schedule_tied_to_an_unlimited_run_is_refused():
    with pytest.raises(ConfigError, match=r"lr_scheduler.T_max=-1 is impossible"):
        validate_config(compose_train(["experiment=dpm2015_swissroll", "trainer.max_steps=-1"]))


def test_optimizer_ema_and_parameterization_are_choices_of_their_own():
    """The ``model`` group holds the model; the optimizer, its LR schedule, the EMA and (score models)
    the parameterisation are config groups the builder hands to the classes that take them."""
    import torch

    from diffzoo.errors import ConfigError
    from diffzoo.lit.build import build_module
    from tests.helpers import compose_train

    module = build_module(compose_train(["experiment=ddpm_digits", "optimizer=adamw", "ema.decay=null"]), (1, 8, 8))
    assert module.ema is None and module.weights_label() == "raw"
    assert module.optimizer_factory.func is torch.optim.AdamW
    score = build_module(compose_train(["experiment=ncsnv2_digits", "net.ngf=4"]), (1, 8, 8))
    assert score.parameterization.kind == "scaled" and score.parameterization.net_input == "none"
    with pytest.raises(ConfigError, match="ema is set but NoisyClassifierModule takes no ema; set ema=null"):
        build_module(compose_train(["experiment=adm_classifier_digits", "ema=default"]), (1, 8, 8))
    # a value set both in the model group (as before the split) and in its own group is refused, not dropped
    with pytest.raises(ConfigError, match=r"model.ema_decay is set, but ema is a config group .* set ema.decay="):
        build_module(compose_train(["experiment=ddpm_digits", "+model.ema_decay=0.9"]), (1, 8, 8))
