"""A file given as a checkpoint that cannot be used says why, in one line naming the file: missing,
not a torch file, truncated, holding code, or written by another kind of model / network. Each reason
has its own message (issue 20)."""

import os
import pickle

import pytest
import torch
from torch import nn

from diffzoo.checkpoints import check_model_kind, check_state_dict_compatible, load_checkpoint
from diffzoo.errors import CheckpointError


def _good(path, model="diffzoo.lit.DiffusionModule"):
    torch.save({"state_dict": {"w": torch.zeros(3)}, "diffzoo": {"config": {"name": "ddpm_digits", "model": {"_target_": model}}}},
               path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_good_checkpoint_loads(tmp_path):
    ckpt = load_checkpoint(_good(tmp_path / "ok.ckpt"))
    assert torch.equal(ckpt["state_dict"]["w"], torch.zeros(3))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match=r"checkpoint is a directory: "):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"hello, this is a text file\n", b"\x00\x01\x02\x03 binary junk", "é, ü".encode()])
def test_not_a_torch_file(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"notes.txt is not a torch checkpoint \(it starts with") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "code execution" not in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_truncated_zip_checkpoint(tmp_path, keep):
    full = _good(tmp_path / "full.ckpt").read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(full[: int(len(full) * keep)])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*cut.ckpt: the file is (empty|truncated or corrupt)"):
        load_checkpoint(path)


def test_truncated_legacy_pickle(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, whole, _use_new_zipfile_serialization=False)
    path = tmp_path / "cut.ckpt"
    path.write_bytes(whole.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*cut.ckpt: the file is truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_code_objects_are_refused(tmp_path, writer):
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {}, "x": _Evil()}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.ckpt: it contains objects other than tensors"):
        load_checkpoint(path)


def test_another_model_kind(tmp_path):
    path = _good(tmp_path / "cls.ckpt", model="diffzoo.lit.NoisyClassifierModule")
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"cls.ckpt is of another model kind: it holds a NoisyClassifierModule .*"
                                              r"this config builds a DiffusionModule"):
        check_model_kind(ckpt, "diffzoo.lit.DiffusionModule", path)
    check_model_kind(ckpt, "diffzoo.lit.classifier.NoisyClassifierModule", path)  # the same class, another import path
    check_model_kind({"state_dict": {}}, "diffzoo.lit.DiffusionModule", path)  # no stored config: the weight check decides


def test_another_network(tmp_path):
    with pytest.raises(CheckpointError, match=r"different network .*1 shape mismatches, e.g. weight"):
        check_state_dict_compatible(nn.Linear(2, 3, bias=False), {"weight": torch.zeros(4, 2)}, tmp_path / "x.ckpt")


def test_the_four_reasons_read_differently(tmp_path):
    """Not a torch file / truncated / another kind / code: four distinct first words after the path."""
    messages = []
    text = tmp_path / "a.txt"
    text.write_text("not a checkpoint")
    cut = tmp_path / "b.ckpt"
    cut.write_bytes(_good(tmp_path / "full.ckpt").read_bytes()[:100])
    evil = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "x": _Evil()}, evil)
    for path in (text, cut, evil):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        messages.append(str(info.value))
    with pytest.raises(CheckpointError) as info:
        check_model_kind(load_checkpoint(_good(tmp_path / "d.ckpt", "x.Other")), "diffzoo.lit.DiffusionModule", "d.ckpt")
    messages.append(str(info.value))
    keys = ["is not a torch checkpoint", "truncated or corrupt", "objects other than tensors", "another model kind"]
    for message, key in zip(messages, keys):
        assert key in message and all(other not in message for other in keys if other != key), message
