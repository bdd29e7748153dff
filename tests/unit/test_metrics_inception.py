"""Inception weights offline: one immediate error naming the file, the folder and the fetch
command — no network attempt when offline, and a failed download reports the same way."""

import pytest
import torch

from diffzoo.errors import DiffzooError
from diffzoo.metrics import inception
from diffzoo.metrics.inception import (
    INCEPTION_WEIGHTS_FILE,
    InceptionFeatures,
    InceptionWeightsMissing,
    ensure_inception_weights,
    inception_weights_path,
)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("DIFFZOO_OFFLINE", raising=False)
    return tmp_path / "torch_home"


def test_offline_missing_weights_fail_without_touching_the_network(empty_torch_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download while offline"))
    with pytest.raises(InceptionWeightsMissing) as info:
        InceptionFeatures()
    message = str(info.value)
    assert INCEPTION_WEIGHTS_FILE in message
    assert str(empty_torch_home / "hub" / "checkpoints") in message
    assert "-m diffzoo.metrics.inception" in message and "\n" not in message
    assert isinstance(info.value, DiffzooError)  # the CLIs print it as one line


def test_failed_download_reports_the_same_instructions(empty_torch_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # port 9 on the loopback interface: the connection is refused at once, nothing leaves the machine
    with pytest.raises(InceptionWeightsMissing, match="download failed.*-m diffzoo.metrics.inception"):
        ensure_inception_weights(url="http://127.0.0.1:9/" + INCEPTION_WEIGHTS_FILE, timeout=5)
    assert not inception_weights_path().exists()


def test_present_weights_are_used_without_download(empty_torch_home, monkeypatch):
    path = inception_weights_path()
    assert path.parent == empty_torch_home / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded a present file"))
    assert ensure_inception_weights(download=True) == path


def test_offline_switches(monkeypatch):
    for name in inception.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not inception.offline()
    monkeypatch.setenv("DIFFZOO_OFFLINE", "true")
    assert inception.offline()
