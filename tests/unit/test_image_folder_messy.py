"""Messy image folders (issue 20): every kind of file a user's folder holds is decoded by a stated rule
(checked pixel by pixel against the rule's closed form) or skipped and reported once at setup; a
paper recipe trains at its own network's resolution on a folder of the user's images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffzoo.data import ImageFolderDataModule
from diffzoo.data.errors import DataNotFoundError
from diffzoo.data.image_check import check_images
from diffzoo.data.image_decode import decode_image, load_image
from diffzoo.data.image_folder import BadImageError
from diffzoo.errors import ConfigError

ORIENTATION = 0x0112


def _rgb_ramp(h: int, w: int) -> np.ndarray:
    """Every pixel a distinct colour: R = 40 y, G = 40 x, B = 7 (y w + x)."""
    y, x = np.mgrid[:h, :w]
    return np.stack([40 * y, 40 * x, 7 * (y * w + x)], axis=-1).astype(np.uint8)


def _save_with_orientation(path: Path, pixels: np.ndarray, orientation: int, **kwargs) -> None:
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[ORIENTATION] = orientation
    im.save(path, exif=exif, **kwargs)


def _png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB (3) or RGBA (4) PNG written by hand (PNG spec §11.2.2: colour types
    2 and 6, bit depth 16, filter 0 on every row), which PIL cannot write."""
    h, w, c = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _decoded(path: Path, channels: int = 3) -> np.ndarray:
    return np.asarray(decode_image(path, channels)).astype(np.int64)


# ---------------------------------------------------------------------- decoding rules, pixel by pixel
# EXIF 2.3 tag 274: how the stored rows / columns must be turned to be displayed.
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],             # mirrored horizontally
    3: lambda a: np.rot90(a, 2),         # rotated 180°
    6: lambda a: np.rot90(a, -1),        # rotate 90° clockwise to display
    8: lambda a: np.rot90(a, 1),         # rotate 90° counter-clockwise to display
}


@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_exif_orientation_puts_pixels_where_a_viewer_shows_them(tmp_path, orientation):
    stored = _rgb_ramp(3, 5)  # not square: a rotation also swaps the sides
    _save_with_orientation(tmp_path / "o.png", stored, orientation)
    expected = DISPLAYED[orientation](stored)
    np.testing.assert_array_equal(_decoded(tmp_path / "o.png"), expected)
    # through the whole loader: shorter side 3, the centre 3x3 of the displayed image
    x = load_image(tmp_path / "o.png", 3).permute(1, 2, 0).numpy()
    h, w = expected.shape[:2]
    top, left = (h - 3) // 2, (w - 3) // 2
    np.testing.assert_array_equal(x, expected[top:top + 3, left:left + 3])


def test_exif_orientation_of_a_jpeg(tmp_path):
    """JPEG is lossy: two flat halves, left dark and right bright, stored; orientation 6 shows the
    dark half on top."""
    stored = np.zeros((16, 16, 3), np.uint8)
    stored[:, 8:] = 230
    _save_with_orientation(tmp_path / "o.jpg", stored, 6, quality=95)
    shown = _decoded(tmp_path / "o.jpg")
    assert shown[:6].max() < 40 and shown[10:].min() > 190


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    v = np.array([[0, 1000, 1799, 32768, 65535, 40000]], dtype=np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    expected = np.floor(v.astype(np.float64) * 255 / 65535 + 0.5)  # round(v·255/65535)
    np.testing.assert_array_equal(_decoded(tmp_path / "g16.png", channels=1), expected)
    np.testing.assert_array_equal(_decoded(tmp_path / "g16.png", channels=3), np.repeat(expected[..., None], 3, -1))
    assert list(expected[0]) == [0, 4, 7, 128, 255, 156]


def test_sixteen_bit_rgb_and_rgba_pngs(tmp_path):
    rgb = np.array([[[0, 1000, 65535], [32768, 1799, 255]]], dtype=np.uint16)
    _png16(tmp_path / "rgb16.png", rgb)
    scaled = rgb.astype(np.float64) * 255 / 65535
    assert np.abs(_decoded(tmp_path / "rgb16.png") - scaled).max() <= 1.0  # PIL keeps the high byte: v >> 8
    rgba = np.array([[[65535, 0, 0, 65535], [0, 65535, 0, 0]]], dtype=np.uint16)
    _png16(tmp_path / "rgba16.png", rgba)
    np.testing.assert_array_equal(_decoded(tmp_path / "rgba16.png"), [[[255, 0, 0], [255, 255, 255]]])


def _over_white(c: np.ndarray, a: np.ndarray) -> np.ndarray:
    return c * a / 255 + 255 * (1 - a / 255)


def test_rgba_is_composited_over_white(tmp_path):
    px = np.array([[[255, 0, 0, 128], [10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 255, 64]]], dtype=np.uint8)
    Image.fromarray(px, mode="RGBA").save(tmp_path / "a.png")
    expected = _over_white(px[..., :3].astype(np.float64), px[..., 3:].astype(np.float64))
    got = _decoded(tmp_path / "a.png")
    assert np.abs(got - expected).max() <= 0.5 + 1e-9  # rounded to the nearest integer
    np.testing.assert_array_equal(got[0, 1], [255, 255, 255])  # fully transparent: white, whatever it stores
    np.testing.assert_array_equal(got[0, 2], [10, 20, 30])  # opaque: unchanged


def test_grey_with_alpha_and_palette_with_a_transparent_entry(tmp_path):
    la = Image.fromarray(np.array([[[100, 0], [100, 255], [100, 51]]], np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(_decoded(tmp_path / "la.png", 1)[0], [255, 100, _over_white(100.0, 51.0)], atol=0.5)

    p = Image.new("P", (3, 1))
    p.putpalette([200, 10, 10, 10, 200, 10, 0, 0, 0] + [0] * 759)
    for x, k in enumerate((0, 1, 2)):
        p.putpixel((x, 0), k)
    p.save(tmp_path / "p.png", transparency=2)
    np.testing.assert_array_equal(_decoded(tmp_path / "p.png")[0], [[200, 10, 10], [10, 200, 10], [255, 255, 255]])
    p.save(tmp_path / "p.gif")  # a GIF palette without transparency: plain palette look-up
    np.testing.assert_array_equal(_decoded(tmp_path / "p.gif")[0], [[200, 10, 10], [10, 200, 10], [0, 0, 0]])


def test_grey_bilevel_cmyk_and_the_luma_of_rgb(tmp_path):
    g = np.array([[0, 77, 255]], np.uint8)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(_decoded(tmp_path / "g.png"), np.repeat(g[..., None], 3, -1))
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(_decoded(tmp_path / "b.png", 1), [[0, 255]])
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 160, 30]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2
    assert np.abs(_decoded(tmp_path / "c.png", 1) - luma).max() <= 1.0
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(tmp_path / "k.jpg", quality=95)  # no ink: white paper
    assert _decoded(tmp_path / "k.jpg").min() >= 250


def test_a_small_image_is_upscaled_and_a_flat_one_stays_flat(tmp_path):
    Image.new("RGB", (2, 3), (12, 200, 99)).save(tmp_path / "s.png")
    x = load_image(tmp_path / "s.png", 8)
    assert x.shape == (3, 8, 8)
    assert (x.int() - torch.tensor([12, 200, 99]).view(3, 1, 1)).abs().max() <= 1  # bicubic of a constant


# ---------------------------------------------------------------------- a messy folder as a data module
def _messy_folder(root: Path, size: int = 8) -> tuple[int, list[str]]:
    """Two class folders of good images of every kind, plus bad files. Returns (good count, bad names)."""
    rng = np.random.default_rng(0)
    a, b = root / "gatos_é", root / "perros"
    a.mkdir(parents=True)
    b.mkdir()
    good = 0
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(a / f"{i}.png")
        good += 1
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(a / "ñandú_猫.png")
    Image.fromarray(rng.integers(0, 256, (size, size, 4), dtype=np.uint8), mode="RGBA").save(b / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).convert("P").save(b / "palette.gif")
    Image.fromarray(rng.integers(0, 65536, (size, size), dtype=np.uint16)).save(b / "deep.png")
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(b / "grey.jpg")
    _save_with_orientation(b / "turned.png", rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8), 6)
    Image.new("RGB", (2, 2), (1, 2, 3)).save(b / "tiny.png")
    good += 7
    (a / "notes.png").write_text("not an image")
    (b / "empty.jpg").write_bytes(b"")
    whole = (a / "0.png").read_bytes()
    (b / "cut.png").write_bytes(whole[: len(whole) // 2])
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(b / "big.jpg", quality=90)
    (b / "cut.jpg").write_bytes((b / "big.jpg").read_bytes()[:600])
    (b / "big.jpg").unlink()
    return good, ["notes.png", "empty.jpg", "cut.png", "cut.jpg"]


def test_check_images_sorts_the_good_from_the_bad(tmp_path):
    n_good, bad_names = _messy_folder(tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    found = check_images(files, resolution=8, threads=2)
    assert sum(found.good) == n_good and len(files) == n_good + len(bad_names)
    assert sorted(p.name for p, _ in found.bad) == sorted(bad_names)
    reasons = dict((p.name, why) for p, why in found.bad)
    assert "truncated" in reasons["cut.png"] and str(tmp_path) not in " ".join(reasons.values())
    assert found.small == 1  # tiny.png (2x2 < 8)


def test_the_check_remembers_verdicts_and_decodes_only_new_or_changed_files(tmp_path):
    n_good, _ = _messy_folder(tmp_path / "imgs")
    files = sorted(p for p in (tmp_path / "imgs").rglob("*") if p.is_file())
    cache = tmp_path / "cache" / "check.json"
    first = check_images(files, resolution=8, cache=cache)
    assert first.decoded == len(files) and cache.is_file()
    again = check_images(files, resolution=8, cache=cache)
    assert again.decoded == 0 and again._replace(decoded=0) == first._replace(decoded=0)
    notes = next(f for f in files if f.name == "notes.png")  # a bad file fixed: decoded again, now good
    Image.new("RGB", (8, 8)).save(notes, format="PNG")
    fixed = check_images(files, resolution=8, cache=cache)
    assert fixed.decoded == 1 and sum(fixed.good) == n_good + 1
    cache.write_text("{not json")  # a spoilt cache: everything is checked again
    assert check_images(files, resolution=8, cache=cache).decoded == len(files)


def test_a_messy_folder_sets_up_skips_the_bad_files_and_reports_them_once(tmp_path, capsys):
    n_good, bad_names = _messy_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=8, batch_size=4, num_workers=0)
    assert dm.num_classes == 2
    dm.setup("fit")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "diffzoo: data.root=" in line]
    assert len(lines) == 2, err  # one line for the skipped files, one for the upscaled ones
    assert f"skipping 4 of {n_good + 4} image files cannot be decoded" in lines[0]
    assert all(name in lines[0] for name in bad_names) and "data.on_bad_image=skip" in lines[0]
    assert f"1 of {n_good + 4} images are smaller than 8x8" in lines[1]
    assert len(dm.train_set) == n_good
    labels = sorted(int(dm.train_set[i]["y"]) for i in range(n_good))
    assert labels == [0] * 4 + [1] * 6  # gatos_é: 4 good (the non-ASCII name too), perros: 6
    for i in range(n_good):
        item = dm.train_set[i]
        assert item["x"].shape == (3, 8, 8) and item["x"].abs().max() <= 1
    # a second data module over the same folder (the evaluation callback, a re-setup) says nothing new
    again = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=8, batch_size=4, num_workers=0)
    again.setup("fit")
    assert "diffzoo: data.root=" not in capsys.readouterr().err
    # the training stream never meets a bad file: many batches, every one whole
    loader = iter(dm.train_dataloader())
    for _ in range(6):
        batch = next(loader)
        assert batch["x"].shape == (4, 3, 8, 8) and torch.isfinite(batch["x"]).all()


def test_the_report_comes_once_not_once_per_worker(tmp_path, capfd):
    _messy_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=8, batch_size=4, num_workers=2)
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    for _ in range(4):
        assert next(loader)["x"].shape == (4, 3, 8, 8)
    del loader
    err = capfd.readouterr().err  # the workers' stderr too (file descriptor level)
    assert err.count("skipping 4 of 14 image files") == 1, err


def test_in_memory_and_the_split_over_a_messy_folder(tmp_path):
    n_good, _ = _messy_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=8, val_fraction=0.3, in_memory=True,
                               num_workers=0)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == n_good


def test_on_bad_image_error_refuses_in_one_line(tmp_path):
    _messy_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(root=str(tmp_path / "imgs"), resolution=8, on_bad_image="error", num_workers=0)
    with pytest.raises(BadImageError) as e:
        dm.setup()
    message = str(e.value)
    assert "\n" not in message and "4 of 14 image files cannot be decoded" in message
    assert "data.on_bad_image=skip" in message and "notes.png" in message
    with pytest.raises(ConfigError, match=r"data.on_bad_image='sometimes' is not one of: skip, error"):
        ImageFolderDataModule(root=str(tmp_path), on_bad_image="sometimes")


def test_a_folder_of_only_bad_files_is_refused(tmp_path):
    (tmp_path / "a.png").write_text("no")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="readable images not found .*none of the 2 image files decodes"):
        ImageFolderDataModule(root=str(tmp_path), resolution=8, num_workers=0).setup()


def test_a_file_spoilt_after_setup_is_replaced_or_refused(tmp_path):
    for i in range(3):
        Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=4, num_workers=0)
    dm.setup()
    (tmp_path / "1.png").write_text("spoilt")
    assert int(dm.train_set[1]["x"].add(1).mul(127.5).round()[0, 0, 0]) == 20  # the next good file, 2.png
    dm.train_set.on_bad_image = "error"
    with pytest.raises(BadImageError, match="1.png"):
        dm.train_set[1]


def test_a_replaced_file_brings_its_own_label(tmp_path):
    for k, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4), (100 * k, 0, 0)).save(tmp_path / name / "0.png")
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=4, num_workers=0)
    dm.setup()
    (tmp_path / "a" / "0.png").write_text("spoilt")  # index 0 (class a) now decodes as index 1 (class b)
    assert int(dm.train_set[0]["y"]) == 1
    memory = dm.train_set.to_memory()
    assert memory.y.tolist() == [1, 1] and int(memory.x[0, 0, 0, 0]) == 100


# ---------------------------------------------------------------------- resolution follows the network
def test_data_resolution_follows_the_experiments_network():
    from diffzoo.config import compose_config

    cfg = compose_config("train", ["experiment=ddpm_cifar10", "data=image_folder", "data.root=/nowhere"])
    assert cfg.data.resolution == cfg.net.image_size == 32
    cfg = compose_config("train", ["experiment=ddpm_cifar10", "data=image_folder", "net.image_size=16"])
    assert cfg.data.resolution == 16  # one source of truth
    cfg = compose_config("train", ["experiment=ddpm_cifar10", "data=image_folder", "data.resolution=24"])
    assert cfg.data.resolution == 24  # the user's own value wins
    cfg = compose_config("train", ["experiment=adm_imagenet64"])
    assert cfg.data.resolution == cfg.net.image_size == 64


def test_a_paper_recipe_trains_on_a_messy_folder_at_its_own_resolution(tmp_path, capsys):
    """``experiment=ddpm_cifar10 data=image_folder data.root=DIR`` on 32x32 images with bad files among
    them: one training step at 32x32 (the paper's U-Net at a CPU-test width)."""
    from diffzoo.train import train
    from tests.helpers import compose_train

    n_good, _ = _messy_folder(tmp_path / "imgs", size=32)
    cfg = compose_train(["experiment=ddpm_cifar10", "data=image_folder", f"data.root={tmp_path / 'imgs'}",
                         "trainer.fast_dev_run=true", "logger=csv", "data.num_workers=0", "data.batch_size=4",
                         "callbacks.evaluation=null", "final_samples=0", "net.base_channels=32", "net.num_res_blocks=1"],
                        run_dir=tmp_path / "run")
    metrics = train(cfg)
    assert metrics["step"] == 1
    assert "skipping 4 of" in capsys.readouterr().err
    stored = (tmp_path / "run" / "config.yaml").read_text()
    assert "resolution: 32" in stored
