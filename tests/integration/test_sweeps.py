"""``--multirun`` sweeps: every launcher gives one run dir per job and a summary table at the end;
each job is its own W&B run in the sweep's group; the SLURM presets compose; Optuna optimises
the returned metric; DDP inside a sweep makes no duplicate dirs."""

import json

import pytest

from diffzoo.config import compose_config
from tests.helpers import TINY, run_cli
from tests.integration.test_wandb import offline_runs, summarize

TOY = [o for o in TINY if o != "trainer.max_steps=3"] + ["experiment=ddpm_toy2d", "trainer.max_steps=2"]


def _sweep_dir(tmp_path):
    (sweep,) = (tmp_path / "runs" / "ddpm_toy2d").glob("multirun_*")
    return sweep


def _check_sweep(tmp_path, proc, n_jobs):
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == [str(i) for i in range(n_jobs)]  # one run dir per job, nothing else
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["step"] == 2
        assert (job / "checkpoints" / "last.ckpt").is_file()
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["done"] * n_jobs
    assert (sweep / "summary.csv").read_text().count("\n") == n_jobs + 1
    assert "Sweep summary" in proc.stdout and "| job | overrides |" in (sweep / "summary.md").read_text()
    return sweep, rows


def test_basic_launcher_2x2_one_wandb_run_per_job(tmp_path):
    overrides = [o for o in TOY if o != "logger=csv"] + ["logger=wandb"]
    proc = run_cli("diffzoo.train", ["--multirun", *overrides, "seed=0,1", "ema.decay=0.9,0.99"], cwd=tmp_path)
    sweep, rows = _check_sweep(tmp_path, proc, 4)
    assert [r["overrides"] for r in rows] == ["seed=0 ema.decay=0.9", "seed=0 ema.decay=0.99",
                                             "seed=1 ema.decay=0.9", "seed=1 ema.decay=0.99"]
    runs = [summarize(offline_runs(sweep / str(i))[0]) for i in range(4)]
    assert len({r["id"] for r in runs}) == 4  # a W&B run per job ...
    assert {r["group"] for r in runs} == {f"ddpm_toy2d/{sweep.name}"}  # ... grouped by sweep


@pytest.mark.slow
def test_joblib_launcher_2x2(tmp_path):
    proc = run_cli("diffzoo.train", ["--multirun", *TOY, "seed=0,1", "ema.decay=0.9,0.99",
                                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], cwd=tmp_path)
    _check_sweep(tmp_path, proc, 4)


@pytest.mark.slow
def test_submitit_local_two_jobs(tmp_path):
    proc = run_cli("diffzoo.train", ["--multirun", *TOY, "seed=0,1", "hydra/launcher=submitit_local",
                                     "hydra.launcher.timeout_min=5"], cwd=tmp_path)
    _check_sweep(tmp_path, proc, 2)


@pytest.mark.parametrize("preset", ["slurm", "slurm_gpu"])
def test_slurm_presets_compose(preset):
    cfg = compose_config(config_name="train", overrides=[f"hydra/launcher={preset}", "hydra.launcher.gpus_per_node=4",
                                                  "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.additional_parameters.requeue is True
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0
    assert launcher.tasks_per_node == (4 if preset == "slurm_gpu" else 1)  # slurm_gpu: one task per GPU
    assert "sweep_summary" in cfg.hydra.callbacks  # our hydra config is still in place


@pytest.mark.slow
def test_optuna_two_trials_optimise_the_returned_metric(tmp_path):
    proc = run_cli("diffzoo.train", ["--multirun", *TOY, "hparams_search=optuna_lr", "hydra.sweeper.n_trials=2"],
                   cwd=tmp_path)
    sweep, rows = _check_sweep(tmp_path, proc, 2)
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best
    assert min(r["train_loss"] for r in rows) == pytest.approx(float(best.split("best_value:")[1].split()[0]))


@pytest.mark.slow
def test_multirun_with_ddp_makes_one_dir_per_job(tmp_path):
    proc = run_cli("diffzoo.train", ["--multirun", *TOY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                     "seed=0,1"], cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    _check_sweep(tmp_path, proc, 2)
    assert len(list((tmp_path / "runs" / "ddpm_toy2d").iterdir())) == 1  # no stray run dirs from rank 1
    for job in ("0", "1"):
        assert (_sweep_dir(tmp_path) / job / "train_ddp_process_1.log").is_file()  # rank 1 joined this job
