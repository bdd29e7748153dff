"""W&B conventions, read back from the offline run files: project / group / job type / tags from
the experiment, the flattened resolved config, the YAML as a ``config`` artifact, ``train/*``
keys; checkpoints as artifacts (``logger.wandb.log_model``) need an online run."""

import struct
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from diffzoo.errors import ConfigError
from diffzoo.train import train
from tests.helpers import TINY, compose_train

_BLOCK, _FILE_HEADER, _RECORD_HEADER = 32768, 7, 7  # the .wandb file: a LevelDB-style record log


def wandb_records(path: Path) -> list:
    """Every ``Record`` protobuf in an offline ``run-*.wandb`` file (chunks of 32 KiB blocks:
    ``crc32 | length | type`` headers, type 1 = whole record, 2/3/4 = first/middle/last piece)."""
    data, pos, pieces, out = path.read_bytes(), _FILE_HEADER, b"", []
    while pos + _RECORD_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _RECORD_HEADER]) if left >= _RECORD_HEADER else (0, 0, 0)
        if kind == 0:
            pos += left  # block padding
            continue
        chunk = data[pos + _RECORD_HEADER:pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        pieces = chunk if kind in (1, 2) else pieces + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pieces)
            out.append(record)
    return out


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def summarize(path: Path) -> dict:
    """The parts of an offline run the dashboards show: run fields, config keys, artifacts, history keys."""
    info = {"config": set(), "artifacts": [], "history": set()}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(id=r.run.run_id, project=r.run.project, group=r.run.run_group, job_type=r.run.job_type,
                        name=r.run.display_name, tags=list(r.run.tags))
        elif kind == "config":
            info["config"].update(u.key for u in r.config.update)
        elif kind == "artifact":
            info["artifacts"].append((r.artifact.type, r.artifact.name))
        elif kind == "history":
            info["history"].update(i.key or "/".join(i.nested_key) for i in r.history.item)
    return info


def test_wandb_run_follows_the_conventions(tmp_path):
    overrides = [o for o in TINY if o != "logger=csv"] + ["experiment=ddpm_toy2d", "logger=wandb", "run_id=w1"]
    train(compose_train(overrides))
    run_dir = tmp_path / "runs" / "ddpm_toy2d" / "w1"
    (path,) = offline_runs(run_dir)
    info = summarize(path)
    assert info["project"] == "diffzoo" and info["group"] == "ddpm_toy2d" and info["job_type"] == "train"
    assert info["name"] == "ddpm_toy2d-w1" and set(info["tags"]) == {"ddpm", "toy2d"}
    # the resolved config, flattened: one column per leaf
    assert {"optimizer.lr", "trainer.max_steps", "run_id", "data._target_"} <= info["config"]
    assert ("config", f"config-{info['id']}") in info["artifacts"]
    assert "train/loss" in info["history"]


def test_checkpoint_artifacts_need_an_online_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train(TINY + ["experiment=ddpm_toy2d", "logger=wandb", "logger.wandb.log_model=true"])
    with pytest.raises(ConfigError, match="logger.wandb.log_model=True needs an online W&B run"):
        train(cfg)
