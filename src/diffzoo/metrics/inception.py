"""The standard Inception-v3 feature extractor (torch-fidelity's port of the TF-FID network).

Its weights file, ``weights-inception-2015-12-05-6726825d.pth`` (~92 MB), is fetched once into
torch's hub cache (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``),
where torch-fidelity and torchmetrics both look for it. Offline (``HF_HUB_OFFLINE=1`` or
``DIFFZOO_OFFLINE=1``, as ``make`` sets) a missing file is reported at once, in one line naming
the file, the folder and the command that fetches it::

    python -m diffzoo.metrics.inception        # downloads the weights (needs internet)

Online, a failed download (no route, proxy, timeout) gives the same message within
``DOWNLOAD_TIMEOUT_S`` seconds instead of hanging.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import DiffzooError
from .feature_types import Features

__all__ = [
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_URL",
    "InceptionWeightsMissing",
    "inception_weights_path",
    "offline",
    "fetch_command",
    "ensure_inception_weights",
    "InceptionFeatures",
]

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
DOWNLOAD_TIMEOUT_S = 30.0
OFFLINE_ENV = ("DIFFZOO_OFFLINE", "HF_HUB_OFFLINE")


class InceptionWeightsMissing(DiffzooError, FileNotFoundError):
    """The Inception weights are not on disk and cannot be downloaded now."""


def inception_weights_path() -> Path:
    """Where torch-fidelity / torchmetrics look for the weights: ``<torch hub dir>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def offline() -> bool:
    """True when ``DIFFZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def fetch_command() -> str:
    return f"{Path(sys.executable).name} -m diffzoo.metrics.inception"


def _missing_message(path: Path, reason: str) -> str:
    return (
        f"Inception weights {INCEPTION_WEIGHTS_FILE} not found at {path} ({reason}). "
        f"Fetch them once with `{fetch_command()}` (needs internet), or download {INCEPTION_URL} "
        f"and put the file in {path.parent} (the torch hub cache; TORCH_HOME moves it); "
        "or evaluate in a classifier feature space with extractor=classifier."
    )


def ensure_inception_weights(download: bool | None = None, url: str = INCEPTION_URL, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Path of the Inception weights, downloading them if allowed.

    ``download=None``: download unless :func:`offline`. A missing file that may not or cannot be
    downloaded raises :class:`InceptionWeightsMissing` with the one-line instructions.
    """
    path = inception_weights_path()
    if path.is_file():
        return path
    if download is None:
        download = not offline()
    if not download:
        raise InceptionWeightsMissing(_missing_message(path, "offline: HF_HUB_OFFLINE / DIFFZOO_OFFLINE is set"))
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as err:  # URLError, HTTPError, timeouts, SSL errors: all mean "no file"
        raise InceptionWeightsMissing(_missing_message(path, f"download failed: {type(err).__name__}: {err}")) from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3 as a :class:`~diffzoo.metrics.features.FeatureExtractor`:
    pool3 features (2048-d, FID / KID) and ``logits_unbiased`` (1008 classes, IS), as in
    torch-fidelity's defaults. Inputs are uint8 ``[B, C, H, W]``; grey images are repeated to 3
    channels; the network resizes to 299×299 with TF1-compatible bilinear interpolation.
    """

    space = "inception"
    resize = "tf1-bilinear-299"
    feature_dim = 2048

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = Path(weights_path) if weights_path is not None else ensure_inception_weights()
        self.identity = f"inception-v3-compat:{path.name}"
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Features:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise TypeError(f"Inception takes uint8 [B, 1|3, H, W] images, got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        device = next(self.net.parameters()).device
        f, logits = self.net(images.to(device))
        return Features(f.float(), logits.float())


def main() -> None:
    """``python -m diffzoo.metrics.inception``: download the weights into the torch hub cache."""
    try:
        path = ensure_inception_weights(download=True, timeout=120.0)
    except InceptionWeightsMissing as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"Inception weights: {path}")


if __name__ == "__main__":
    main()
