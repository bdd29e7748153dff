"""``trainer=ddp`` trains with 2 CPU processes (gloo) and writes exactly one run directory.

DDP is started through a subprocess: in-process DDP would re-launch pytest itself as rank 1."""

import torch

from tests.helpers import run_cli


def test_ddp_two_processes_one_run_dir(tmp_path):
    runs = tmp_path / "runs"
    proc = run_cli(
        "diffzoo.train",
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=4", "logger=csv",
         "data.batch_size=16", "net.base_channels=32", "final_samples=4", "sampler.steps=5",
         "callbacks.sample_grid.every_n_steps=1000000", "callbacks.model_checkpoint.every_n_train_steps=2",
         "callbacks.evaluation=null"],
        cwd=tmp_path,
        env={"DIFFZOO_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1"},  # 2 processes on 2 cores
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = [p for p in (runs / "ddpm_digits").iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs
    ckpt = torch.load(run_dirs[0] / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert (run_dirs[0] / "samples" / "final.png").is_file()
