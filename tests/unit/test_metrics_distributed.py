"""Distributed sampling: every global index is drawn exactly once, in batches that do not depend
on the number of processes; gathering over 2 and 3 gloo processes returns exactly N rows in index
order, including a process with no rows, and refuses duplicated indices."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from diffzoo.metrics.distributed import SHARD_MODES, gather_by_index, shard_batches
from tests.helpers import REPO


@pytest.mark.parametrize("mode", SHARD_MODES)
@pytest.mark.parametrize("n,batch", [(37, 8), (5, 8), (64, 8), (1, 1), (1000, 7)])
def test_shards_cover_every_index_once_in_world_size_independent_batches(mode, n, batch):
    single = shard_batches(n, batch, 0, 1, mode)
    for world_size in (1, 2, 3, 8):
        shards = [shard_batches(n, batch, r, world_size, mode) for r in range(world_size)]
        batches = [b for shard in shards for b in shard]
        assert sorted(batches, key=lambda b: b.start) == single  # the same batches, however many processes
        assert sorted(i for b in batches for i in b) == list(range(n))  # each index once, no padding


def test_unknown_shard_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'contiguous', 'strided'"):
        shard_batches(10, 2, 0, 1, "padded")


def test_single_process_gather_orders_by_index_and_counts():
    rows = torch.arange(10.0)[:, None].repeat(1, 3)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(gather_by_index(rows[perm], perm, 10), rows)
    with pytest.raises(RuntimeError, match="expected exactly N=11"):
        gather_by_index(rows, torch.arange(10), 11)
    with pytest.raises(RuntimeError, match="duplicates or gaps"):
        gather_by_index(rows, torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 8]), 10)


GATHER_SCRIPT = textwrap.dedent("""
    import json, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from diffzoo.metrics.distributed import gather_by_index, shard_batches

    def run(rank, world_size, init, out, n, batch, mode):
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
        idx = torch.tensor([i for b in shard_batches(n, batch, rank, world_size, mode) for i in b], dtype=torch.long)
        rows = torch.stack([idx.float(), idx.float() ** 2], dim=1) if len(idx) else torch.empty(0)
        gathered = gather_by_index(rows, idx, n)
        result = {"local": len(idx), "rows": gathered.tolist()}
        try:  # every rank with rows sends its first index twice: all ranks must refuse the set
            dup = torch.cat([idx, idx[:1]])
            gather_by_index(torch.zeros(len(dup), 2), dup, n)
            result["duplicate"] = "accepted"
        except RuntimeError as e:
            result["duplicate"] = str(e)
        json.dump(result, open(f"{out}/{n}-{batch}-{world_size}-{mode}-rank{rank}.json", "w"))
        dist.destroy_process_group()

    if __name__ == "__main__":
        out = sys.argv[1]
        for case in json.loads(sys.argv[2]):
            n, batch, world_size, mode = case
            init = f"file://{out}/store-{n}-{batch}-{world_size}-{mode}"
            # fork: the workers inherit the imported modules (no re-import per process)
            mp.start_processes(run, args=(world_size, init, out, n, batch, mode), nprocs=world_size, start_method="fork")
""")

CASES = [(37, 8, 2, "contiguous"), (5, 8, 2, "contiguous"), (37, 4, 3, "strided")]


def test_gloo_gather_returns_exactly_n_rows_in_index_order(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), json.dumps(CASES)],
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n, batch, world_size, mode in CASES:
        expected = [[float(i), float(i) ** 2] for i in range(n)]
        results = [json.loads((tmp_path / f"{n}-{batch}-{world_size}-{mode}-rank{r}.json").read_text()) for r in range(world_size)]
        assert sum(r["local"] for r in results) == n
        for r in results:
            assert r["rows"] == expected
            assert "expected exactly N" in r["duplicate"]
        if (n, batch) == (5, 8):
            assert sorted(r["local"] for r in results) == [0, 5]  # one process drew nothing
