"""The ``Evaluation`` training callback: periodic + final metrics from all ranks, logged as
``eval/<name>``, in ``trainer.callback_metrics``, a history file and a plot; its numbers equal a
stand-alone evaluation of the same weights; under 2-process DDP the gathered count is N."""

import json
import os
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from diffzoo.callbacks.evaluation import Evaluation
from diffzoo.config import CONFIG_DIR
from diffzoo.data import DigitsDataModule, Toy2DDataModule
from diffzoo.lit.build import build_module
from diffzoo.metrics.pipeline import EvalSetup, run_evaluation
from tests.helpers import REPO
from tests.integration.test_eval_cli import tiny_run_config


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "diffzoo-metrics-cache"


def _trainer(tmp_path, callback, max_steps):
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=L.pytorch.loggers.CSVLogger(tmp_path / "logs"),
                     callbacks=[callback], use_distributed_sampler=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                     num_sanity_val_steps=0, default_root_dir=str(tmp_path))


EVAL = dict(n=20, batch_size=8, kid_subsets=5, classifier_epochs=3)


def test_periodic_and_final_evaluation(tmp_path, shared_cache):
    torch.manual_seed(0)
    cfg = OmegaConf.create(tiny_run_config("digits"))
    cfg.data.batch_size = 16
    module = build_module(cfg, (1, 8, 8))
    callback = Evaluation(every_n_steps=2, metrics=["fid", "kid", "is"], cache_dir=str(shared_cache), sampler={"steps": 3}, **EVAL)
    trainer = _trainer(tmp_path, callback, max_steps=5)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=16))

    history = [json.loads(line) for line in (tmp_path / "eval" / "history.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in history}) == [2, 4, 5]  # every 2 steps, and at the end
    assert {r["name"] for r in history} == {"fid_digits20", "kid_digits20", "is_digits20"}
    assert all(r["n"] == 20 and r["weights"] == "ema" and r["nfe"] == 3 for r in history)
    assert (tmp_path / "eval" / "metrics_vs_step.png").is_file()
    assert "eval/fid_digits20" in trainer.callback_metrics
    logged = (tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "eval/fid_digits20" in logged.splitlines()[0]

    # the callback's final numbers are those of a stand-alone evaluation of the same EMA weights
    final = {r["name"]: r["value"] for r in history if r["step"] == 5}
    setup = EvalSetup(metrics=("fid", "kid", "is"), sampler=module.sampler.with_steps(3), **EVAL)
    alone = run_evaluation(module.cpu(), module.run_config["data"], setup, shared_cache).values()
    assert all(alone[name] == value for name, value in final.items())


def test_toy_data_gets_toy_metrics(tmp_path, shared_cache):
    cfg = OmegaConf.create(tiny_run_config("digits"))
    cfg.data = OmegaConf.load(f"{CONFIG_DIR}/data/toy2d.yaml")
    cfg.data.update(name="eight_gaussians", n_train=256, n_val=128, batch_size=32, seed=0)
    cfg.net = {"_target_": "diffzoo.networks.TimeMLP", "dim": 2, "hidden": 32, "depth": 2, "time_embed_dim": 16}
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    module = build_module(cfg, (2,))
    callback = Evaluation(every_n_steps=None, n=64, batch_size=32, sampler={"steps": 4}, cache_dir=str(shared_cache))
    trainer = _trainer(tmp_path, callback, max_steps=2)
    trainer.fit(module, datamodule=Toy2DDataModule(name="eight_gaussians", n_train=256, n_val=128, batch_size=32))
    names = {r.name for r in callback.last_records}
    assert names == {"swd64", "mmd64", "loglik64"}
    assert all(torch.isfinite(torch.tensor(r.value)) or r.metric == "loglik" for r in callback.last_records)


def test_nothing_is_prepared_when_no_evaluation_is_due(tmp_path):
    module = build_module(OmegaConf.create(tiny_run_config("digits")), (1, 8, 8))
    callback = Evaluation(every_n_steps=100, at_train_end=False, cache_dir=str(tmp_path / "cache"), sampler={"steps": 3}, **EVAL)
    _trainer(tmp_path, callback, max_steps=2).fit(module, datamodule=DigitsDataModule(batch_size=16))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "eval").exists() and callback.last_records == []


DDP_SCRIPT = textwrap.dedent("""
    import json, sys, torch, lightning as L
    from omegaconf import OmegaConf
    from diffzoo.callbacks.evaluation import Evaluation
    from diffzoo.data import DigitsDataModule
    from diffzoo.lit.build import build_module
    from tests.integration.test_eval_cli import tiny_run_config

    out, cache = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    module = build_module(OmegaConf.create(tiny_run_config("digits")), (1, 8, 8))
    callback = Evaluation(every_n_steps=None, n=37, batch_size=8, sampler={"steps": 3}, metrics=["fid"], cache_dir=cache,
                          classifier_epochs=3, dirpath=out + "/eval")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False, callbacks=[callback],
                        use_distributed_sampler=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=out)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=8))
    record = callback.last_records[0]
    json.dump({"name": record.name, "value": record.value}, open(f"{out}/rank{trainer.global_rank}.json", "w"))
    if trainer.is_global_zero:
        torch.save(module.ema.shadow.state_dict(), out + "/ema.pt")
""")


def test_ddp_ranks_share_one_evaluation(tmp_path, shared_cache):
    script = tmp_path / "ddp_eval.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(shared_cache)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["name"] == "fid_digits37"

    # one process, same EMA weights → the same number
    module = build_module(OmegaConf.create(tiny_run_config("digits")), (1, 8, 8))
    module.ema.shadow.load_state_dict(torch.load(tmp_path / "ema.pt", weights_only=True))
    setup = EvalSetup(n=37, batch_size=8, sampler=module.sampler.with_steps(3), metrics=("fid",), classifier_epochs=3)
    alone = run_evaluation(module, module.run_config["data"], setup, shared_cache).values()
    # the same samples and features; the Fréchet distance's matrix square root is summed in another order
    # when this process runs more BLAS threads than the DDP workers (1), hence a float64 round-off tolerance
    assert alone["fid_digits37"] == pytest.approx(r0["value"], rel=1e-6)
