"""Data layer: the resumable sampler, the data modules, file formats and missing-data errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from diffzoo.data import (
    CIFAR10DataModule,
    DataNotFoundError,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    InfiniteBatchSampler,
    InMemoryDataset,
    MirroredDataset,
    Toy2DDataModule,
    collate_batch,
)
from diffzoo.data.fashion_mnist import read_idx
from diffzoo.data.sampler import epoch_permutation

CONF = Path(__file__).resolve().parents[2] / "src" / "diffzoo" / "conf" / "data"


def take(sampler, k):
    it = iter(sampler)
    return [next(it) for _ in range(k)]


# ---------------------------------------------------------------- InfiniteBatchSampler
@pytest.mark.parametrize("drop_last", [True, False])
def test_every_epoch_is_a_permutation(drop_last):
    n, b = 10, 4
    s = InfiniteBatchSampler(n, b, seed=3, drop_last=drop_last)
    stream = torch.tensor(sum(take(s, 12), []))
    epoch = s.epoch_length  # 8 when dropping the tail of each epoch, else 10
    assert epoch == (8 if drop_last else 10)
    for e in range(len(stream) // epoch):
        chunk = stream[e * epoch: (e + 1) * epoch]
        perm = epoch_permutation(n, 3, e)
        assert torch.equal(chunk, perm[:epoch])  # permutation e, in order
        assert len(set(chunk.tolist())) == epoch  # no index twice within an epoch
    assert not torch.equal(epoch_permutation(n, 3, 0), epoch_permutation(n, 3, 1))
    assert not torch.equal(epoch_permutation(n, 3, 0), epoch_permutation(n, 4, 0))


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_partition_the_single_process_stream(drop_last):
    n, b, world = 17, 2, 3
    single = take(InfiniteBatchSampler(n, b * world, seed=1, drop_last=drop_last), 20)
    per_rank = [
        take(InfiniteBatchSampler(n, b, seed=1, rank=r, world_size=world, drop_last=drop_last), 20)
        for r in range(world)
    ]
    for step in range(20):
        assert sum((per_rank[r][step] for r in range(world)), []) == single[step]
        if drop_last:  # a global batch then lies inside one permutation: ranks are disjoint
            seen = [set(per_rank[r][step]) for r in range(world)]
            assert all(not (seen[i] & seen[j]) for i in range(world) for j in range(i + 1, world))


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("k", [0, 1, 5, 11])
def test_start_batch_resumes_the_stream(drop_last, k):
    n, b, world = 13, 2, 2
    for r in range(world):
        common = dict(seed=9, rank=r, world_size=world, drop_last=drop_last)
        full = take(InfiniteBatchSampler(n, b, **common), k + 6)
        resumed = take(InfiniteBatchSampler(n, b, start_batch=k, **common), 6)
        assert resumed == full[k:]


def test_sampler_is_endless_and_validates():
    s = InfiniteBatchSampler(5, 2)
    assert not hasattr(s, "__len__")
    loader = torch.utils.data.DataLoader(InMemoryDataset(torch.zeros(5, 2)), batch_sampler=s, collate_fn=collate_batch)
    with pytest.raises(TypeError):
        len(loader)
    with pytest.raises(ValueError, match="drop_last"):
        InfiniteBatchSampler(5, 4, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        InfiniteBatchSampler(5, 1, rank=2, world_size=2)


# ---------------------------------------------------------------- data sets
def test_in_memory_and_mirrored_datasets():
    x = torch.arange(4 * 3 * 2, dtype=torch.uint8).reshape(4, 1, 3, 2) * 10
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 255
    ds = InMemoryDataset(x, torch.tensor([3, 1, 4, 1]))
    batch = ds.__getitems__([2, 0])
    assert batch["x"].dtype == torch.float32 and batch["y"].tolist() == [4, 3]
    torch.testing.assert_close(batch["x"], x[[2, 0]].float() / 255 * 2 - 1)
    assert batch["x"][1, 0, 0, 0] == -1 and batch["x"][1, 0, 0, 1] == 1
    stacked = collate_batch([ds[2], ds[0]])
    assert torch.equal(stacked["x"], batch["x"]) and torch.equal(stacked["y"], batch["y"])

    mirrored = MirroredDataset(ds)
    assert len(mirrored) == 8
    both = mirrored.__getitems__([1, 5, 6])
    torch.testing.assert_close(both["x"][1], both["x"][0].flip(-1))
    torch.testing.assert_close(both["x"][2], ds[2]["x"].flip(-1))
    torch.testing.assert_close(mirrored[5]["x"], both["x"][1])
    assert both["y"].tolist() == [1, 1, 4]


def test_worker_processes_give_the_same_batches():
    with_workers = iter(DigitsDataModule(batch_size=32, num_workers=1).train_dataloader())
    in_process = iter(DigitsDataModule(batch_size=32).train_dataloader())
    for _ in range(5):
        a, b = next(with_workers), next(in_process)
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])


# ---------------------------------------------------------------- digits
def test_digits_values_split_and_loader():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(batch_size=50)
    assert dm.data_shape == (1, 8, 8) and dm.num_classes == 10
    dm.setup()
    assert len(dm.train_set) == 1500 and len(dm.val_set) == 297
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16 * 2 - 1
    train, val = dm.train_dataset_tensor(), dm.val_dataset_tensor()
    # the two splits are disjoint and together hold every image once (x/16·2−1 of the originals)
    rows = lambda t: sorted(map(tuple, t.reshape(len(t), -1).tolist()))  # noqa: E731
    assert rows(torch.cat([train, val])) == rows(raw)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (50, 1, 8, 8) and batch["x"].dtype == torch.float32
    assert batch["y"].dtype == torch.int64 and batch["x"].min() >= -1 and batch["x"].max() <= 1
    assert set(dm.train_set.y.tolist()) == set(range(10))
    # the split depends on split_seed only
    same = DigitsDataModule(seed=5)
    same.setup()
    assert torch.equal(same.val_dataset_tensor(), val)
    other = DigitsDataModule(split_seed=1)
    other.setup()
    assert not torch.equal(other.val_dataset_tensor(), val)
    eval_batches = list(dm.val_dataloader())
    assert torch.equal(torch.cat([b["x"] for b in eval_batches]), val)  # ordered, complete, unshuffled


def test_digits_upsampled():
    dm = DigitsDataModule(image_size=16, n_val=10)
    x = dm.train_dataset_tensor()
    assert x.shape == (1787, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match="image_size"):
        DigitsDataModule(image_size=4)


# ---------------------------------------------------------------- resumable state
def test_state_dict_sets_the_start_batch():
    dm = Toy2DDataModule("eight_gaussians", n_train=64, n_val=0, batch_size=4)
    fresh = take(dm.train_dataloader().batch_sampler, 8)
    dm.load_state_dict({"batches_consumed": 5, "global_batch_size": 4})
    assert dm.state_dict()["batches_consumed"] == 5
    sampler = dm.train_dataloader().batch_sampler
    assert isinstance(sampler, InfiniteBatchSampler) and sampler.start_batch == 5
    assert take(sampler, 3) == fresh[5:]
    dm.load_state_dict({"batches_consumed": 5, "global_batch_size": 8})  # resumed with a smaller batch
    with pytest.warns(UserWarning, match="global batch"):
        assert dm.train_dataloader().batch_sampler.start_batch == 10


class _Recorder(L.LightningModule):
    """Records the inputs of every training step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, _):
        self.seen.append(batch["x"].clone())
        return (self.w * batch["x"]).sum() ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(steps, ckpt_in=None, ckpt_out=None, accumulate=1):
    trainer = L.Trainer(
        max_steps=steps, accumulate_grad_batches=accumulate, use_distributed_sampler=False, accelerator="cpu",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    model = _Recorder()
    data = Toy2DDataModule("two_moons", n_train=40, n_val=8, batch_size=8, seed=2)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_in)
    if ckpt_out:
        trainer.save_checkpoint(ckpt_out)
    return model.seen


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_resume_continues_the_data_order(tmp_path, accumulate):
    """Lightning 2.6 restores the data module's state before it builds the train loader, so a
    run resumed at step 3 sees the batches an uninterrupted run sees at steps 3, 4, 5."""
    full = _fit(6, accumulate=accumulate)
    first = _fit(3, ckpt_out=tmp_path / "mid.ckpt", accumulate=accumulate)
    ckpt = torch.load(tmp_path / "mid.ckpt", weights_only=True)
    assert ckpt["Toy2DDataModule"]["batches_consumed"] == 3 * accumulate
    rest = _fit(6, ckpt_in=tmp_path / "mid.ckpt", accumulate=accumulate)
    assert len(full) == 6 * accumulate
    assert all(torch.equal(a, b) for a, b in zip(first + rest, full, strict=True))


# ---------------------------------------------------------------- Fashion-MNIST (IDX files)
def _write_idx(path: Path, array: np.ndarray, code: int, compress: bool = True):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    payload = header + array.astype(big).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion(folder: Path, n_train=6, n_val=4, fill=None, compress=True):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        if fill is None:
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        else:
            images = np.full((n, 28, 28), fill, np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, 0x08, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10, 0x08, compress)
    return folder


def test_read_idx_round_trip_and_corruption(tmp_path):
    ints = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    _write_idx(tmp_path / "a-idx2", ints, 0x0C, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx2"), ints)
    floats = np.linspace(-1, 1, 10, dtype=np.float32)
    _write_idx(tmp_path / "b-idx1", floats, 0x0D)
    np.testing.assert_array_equal(read_idx(tmp_path / "b-idx1.gz"), floats)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    data = (tmp_path / "a-idx2").read_bytes()
    (tmp_path / "short").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="bytes"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_from_the_system_folder(tmp_path):
    system = _fake_fashion(tmp_path / "debian")
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), system_dir=str(system), batch_size=3)
    dm.setup()
    assert len(dm.train_set) == 6 and len(dm.val_set) == 4 and dm.data_shape == (1, 28, 28)
    raw = read_idx(system / "train-images-idx3-ubyte.gz")
    torch.testing.assert_close(dm.train_dataset_tensor(), torch.from_numpy(raw)[:, None].float() / 255 * 2 - 1)
    assert dm.train_set.y.tolist() == [0, 1, 2, 3, 4, 5]
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (3, 1, 28, 28) and batch["y"].dtype == torch.int64


def test_fashion_mnist_prefers_root_and_pads(tmp_path):
    system = _fake_fashion(tmp_path / "debian", fill=10)
    _fake_fashion(tmp_path / "data" / "FashionMNIST" / "raw", fill=200, compress=False)  # torchvision's layout
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), system_dir=str(system), image_size=32)
    x = dm.val_dataset_tensor()
    assert x.shape == (4, 1, 32, 32)
    assert float(x[1, 0, 2, 2]) == pytest.approx(200 / 255 * 2 - 1)  # from root, not the system folder
    assert (x[:, :, :2] == -1).all() and (x[:, :, -2:] == -1).all() and (x[:, :, :, :2] == -1).all()


def test_fashion_mnist_missing_says_where_and_how(tmp_path):
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), system_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as info:
        dm.setup()
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and "\n" not in msg
    assert "Fashion-MNIST" in msg and "apt-get install dataset-fashion-mnist" in msg and "data.download=true" in msg
    for where in (tmp_path / "data" / "FashionMNIST" / "raw", tmp_path / "data", tmp_path / "nowhere"):
        assert str(where) in msg
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args


# ---------------------------------------------------------------- CIFAR-10 (python batches)
def _fake_cifar(root: Path, n=3):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        img = np.zeros((n, 3, 32, 32), np.uint8)
        img[:, 0] = 255  # red plane; the green and blue planes stay 0
        img[:, 1, :, 0] = 10 * k  # first column of the green plane marks the file
        data = {"data": img.reshape(n, -1), "labels": [k] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(data, f)


def test_cifar10_reads_python_batches_and_mirrors(tmp_path):
    _fake_cifar(tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=4)
    dm.setup()
    assert len(dm.train_set) == 2 * 15 and len(dm.val_set) == 3  # train set doubled by mirroring
    x = dm.train_dataset_tensor()
    assert x.shape == (15, 3, 32, 32)
    assert (x[:, 0] == 1).all() and (x[:, 2] == -1).all()  # channel-major rows → [N, 3, 32, 32]
    torch.testing.assert_close(x[3:6, 1, 0, 0], torch.full((3,), 10 / 255 * 2 - 1))  # data_batch_2
    assert dm.train_set.base.y.tolist() == [k for k in range(5) for _ in range(3)]
    mirrored = dm.train_set[15 + 4]["x"]
    torch.testing.assert_close(mirrored, x[4].flip(-1))
    assert next(iter(dm.train_dataloader()))["x"].shape == (4, 3, 32, 32)


def test_cifar10_missing_says_where_and_how(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path / "data"))
    dm.prepare_data()  # no download: nothing happens
    with pytest.raises(DataNotFoundError) as info:
        dm.setup()
    msg = str(info.value)
    assert "CIFAR-10" in msg and "data.download=true" in msg and "cifar-10-batches-py" in msg
    assert str(tmp_path / "data") in msg and "\n" not in msg


# ---------------------------------------------------------------- image folders
def _png(path: Path, rgb, size=(6, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


def test_image_folder_with_class_folders(tmp_path):
    for k in range(3):
        _png(tmp_path / "imgs" / "zebra" / f"{k}.png", (255, 0, 51))
        _png(tmp_path / "imgs" / "ant" / (f"{k}.jpg" if k else "sub/deep.PNG"), (0, 255, 0))  # nested, any case
    (tmp_path / "imgs" / "ant" / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=4, val_fraction=0.34, batch_size=2)
    assert dm.num_classes == 2 and dm.index.classes == ["ant", "zebra"] and dm.data_shape == (3, 4, 4)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (4, 2)
    x = torch.cat([dm.train_dataset_tensor(), dm.val_dataset_tensor()])
    y = [dm.train_set[i]["y"].item() for i in range(4)] + [dm.val_set[i]["y"].item() for i in range(2)]
    for xi, yi in zip(x, y):
        colour = (255, 0, 51) if yi == 1 else (0, 255, 0)  # zebra = 1 (sorted names)
        expected = (torch.tensor(colour).float() / 127.5 - 1)[:, None, None].expand(3, 4, 4)
        torch.testing.assert_close(xi, expected, atol=3 / 127.5, rtol=0)  # JPEG may move a byte or two
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (2, 3, 4, 4) and batch["y"].dtype == torch.int64
    in_memory = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=4, val_fraction=0.34, in_memory=True)
    assert torch.equal(in_memory.train_dataset_tensor(), dm.train_dataset_tensor())


def test_image_folder_crops_the_centre_and_converts_to_grey(tmp_path):
    img = np.zeros((8, 24, 3), np.uint8)
    img[:, 8:16] = 255  # only the middle third is white
    Image.fromarray(img).save(tmp_path / "wide.png")
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=8, channels=1)
    assert dm.num_classes is None
    x = dm.train_dataset_tensor()
    assert x.shape == (1, 1, 8, 8) and (x == 1).all()  # shorter side already 8: crop only
    assert "y" not in dm.train_set[0]


def test_image_folder_mirroring(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, 4:] = 255  # left half black, right half white
    Image.fromarray(img).save(tmp_path / "half.png")
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=8, hflip=True, batch_size=2)
    batch = next(iter(dm.train_dataloader()))  # the one image in both orientations
    assert sorted(batch["x"][:, 0, 0, 0].tolist()) == [-1.0, 1.0]
    torch.testing.assert_close(batch["x"][0], batch["x"][1].flip(-1))


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="image folder not found"):
        ImageFolderDataModule(root=str(tmp_path / "missing")).setup()
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="images not found"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup()
    _png(tmp_path / "mixed" / "a.png", (0, 0, 0))
    _png(tmp_path / "mixed" / "cls" / "b.png", (0, 0, 0))
    with pytest.raises(ValueError, match="use_labels=false"):
        ImageFolderDataModule(root=str(tmp_path / "mixed")).setup()
    unlabelled = ImageFolderDataModule(root=str(tmp_path / "mixed"), use_labels=False, resolution=2)
    assert unlabelled.num_classes is None and unlabelled.train_dataset_tensor().shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match="data.channels"):
        ImageFolderDataModule(root=str(tmp_path), channels=2)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["toy2d", "digits", "fashion_mnist", "cifar10", "image_folder"])
def test_configs_instantiate(tmp_path, name):
    from hydra.utils import instantiate

    data = OmegaConf.load(CONF / f"{name}.yaml")
    if "system_dir" in data:
        data.system_dir = None  # never the machine's installed copy: the data dir is empty
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "seed": 3, "data": data})
    dm = instantiate(cfg.data)
    assert dm.seed == 3 and dm.batch_size == 128
    if name in ("toy2d", "digits"):
        assert next(iter(dm.train_dataloader()))["x"].shape[0] == 128
    elif name == "image_folder":
        assert dm.root == str(tmp_path / "images")
    else:
        assert dm.root == str(tmp_path)
        with pytest.raises(DataNotFoundError):
            dm.setup()


def test_toy2d_config_passes_params_as_plain_values():
    from hydra.utils import instantiate

    data = OmegaConf.load(CONF / "toy2d.yaml")
    data.name, data.params = "gaussian_mixture", {"means": [[1, 1], [-1, -1]], "covs": [0.1, 0.2], "standardize": False}
    dm = instantiate(OmegaConf.create({"seed": 0, "data": data}).data)
    torch.testing.assert_close(dm.distribution.means, torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64))
    torch.testing.assert_close(dm.distribution.covs[1], 0.04 * torch.eye(2, dtype=torch.float64))
