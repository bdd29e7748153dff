"""Resuming from last.ckpt continues with exactly the losses and weights of an uninterrupted run."""

import torch

from diffzoo.train import train
from tests.helpers import TINY, compose_train


def _run(run_dir, steps, extra=()):
    overrides = TINY + [
        f"trainer.max_steps={steps}",
        "data.batch_size=16",
        "net.base_channels=32",
        "+callbacks.losses._target_=tests.helpers.make_loss_recorder",
        f"+callbacks.losses.path={run_dir}/losses.txt",
        "ckpt_path=last",
        *extra,
    ]
    return train(compose_train(overrides, run_dir=run_dir))


def _losses(run_dir):
    return [line.split() for line in (run_dir / "losses.txt").read_text().splitlines()]


def test_resume_is_bit_exact(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(straight, 6)
    _run(resumed, 3)
    assert len(_losses(resumed)) == 3
    _run(resumed, 6)  # same command, larger budget: picks up last.ckpt
    assert _losses(resumed) == _losses(straight)  # every step's loss, bit for bit

    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():  # raw and EMA weights
        assert torch.equal(value, b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _csv_steps(run_dir):
    import csv

    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return sorted(int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss"))


def test_csv_log_keeps_the_history_of_a_resumed_run(tmp_path):
    """Lightning's CSVLogger empties metrics.csv when a run writes to its folder again; a resumed run
    keeps the rows before its checkpoint (and logs the later ones once)."""
    run = tmp_path / "run"
    _run(run, 3)
    assert _csv_steps(run) == [0, 1, 2]
    _run(run, 6)
    assert _csv_steps(run) == [0, 1, 2, 3, 4, 5]
