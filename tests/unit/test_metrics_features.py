"""Golden tests in the digits classifier's feature space: FID of a set with itself is 0, train vs
held-out is small and train vs noise large, torch-fidelity and torchmetrics agree given the same
extractor, IS of one class is ≈ 1; the classifier cache and the reference-statistics cache."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from diffzoo.config import CONFIG_DIR
from diffzoo.metrics.backends import get_backend
from diffzoo.metrics.classifier import classifier_path, load_or_train_classifier
from diffzoo.metrics.data import build_datamodule, load_split
from diffzoo.metrics.features import (
    TorchmetricsFeature,
    choose_extractor_kind,
    extract_features,
    make_extractor,
    register_torch_fidelity_classifier,
)
from diffzoo.metrics.fid import feature_statistics, frechet_distance, inception_score
from diffzoo.metrics import reference as reference_module
from diffzoo.metrics.reference import reference_statistics

EPOCHS = 10  # a shorter run than the default; still > 90% held-out accuracy


@pytest.fixture(scope="module")
def digits_cfg():
    cfg = OmegaConf.load(f"{CONFIG_DIR}/data/digits.yaml")
    cfg.seed = 0
    return cfg


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "diffzoo-metrics-cache"


@pytest.fixture(scope="module")
def digits(digits_cfg, shared_cache):
    """(extractor, train uint8 split, held-out split, classifier path), trained once per session."""
    dm = build_datamodule(digits_cfg)
    extractor = make_extractor("auto", digits_cfg, dm.data_shape, True, shared_cache, epochs=EPOCHS)
    path = classifier_path(digits_cfg, shared_cache, "digits", epochs=EPOCHS)
    return extractor, load_split(dm, "train"), load_split(dm, "val"), path


def test_classifier_is_accurate_and_its_card_sits_next_to_the_weights(digits):
    extractor, _, test, path = digits
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["dataset"] == "digits" and card["epochs"] == EPOCHS and card["n_test"] == len(test.x)
    predicted = extract_features(extractor, test.x).logits.argmax(1)
    accuracy = float((predicted == test.y).float().mean())
    assert accuracy == pytest.approx(card["test_accuracy"]) and accuracy > 0.9
    assert extractor.space == "digits" and extractor.identity.endswith(path.stem)


def test_fid_golden_values(digits):
    extractor, train, test, _ = digits
    f_train = feature_statistics(extract_features(extractor, train.x).features)
    f_test = feature_statistics(extract_features(extractor, test.x).features)
    noise = torch.randint(0, 256, (len(test.x), 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f_noise = feature_statistics(extract_features(extractor, noise).features)
    assert frechet_distance(f_train, f_train) == pytest.approx(0.0, abs=1e-6)
    held_out, noisy = frechet_distance(f_train, f_test), frechet_distance(f_train, f_noise)
    assert noisy > 10 * held_out


def test_torch_fidelity_and_torchmetrics_agree_on_the_same_extractor(digits):
    """Both libraries run the registered digits classifier on the same uint8 images."""
    import torch_fidelity
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    extractor, train, test, path = digits
    real, fake = train.x[: len(test.x)], test.x  # equal sizes: KID over full-size subsets is exact

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    name = register_torch_fidelity_classifier()
    assert register_torch_fidelity_classifier() == name  # idempotent
    tf = torch_fidelity.calculate_metrics(
        input1=Images(fake), input2=Images(real), fid=True, kid=True, isc=True, feature_extractor=name,
        feature_extractor_weights_path=str(path), kid_subset_size=len(fake), kid_subsets=2, isc_splits=1,
        cuda=False, cache=False, verbose=False, save_cpu_ram=True, batch_size=128,
    )
    fid = FrechetInceptionDistance(feature=TorchmetricsFeature(extractor, "features"))
    kid = KernelInceptionDistance(feature=TorchmetricsFeature(extractor, "features"), subsets=2, subset_size=len(fake))
    isc = InceptionScore(feature=TorchmetricsFeature(extractor, "logits"), splits=1)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    isc.update(fake)
    assert float(fid.compute()) == pytest.approx(tf[torch_fidelity.KEY_METRIC_FID], rel=0.01)
    assert float(kid.compute()[0]) == pytest.approx(tf[torch_fidelity.KEY_METRIC_KID_MEAN], rel=0.01)
    assert float(isc.compute()[0]) == pytest.approx(tf[torch_fidelity.KEY_METRIC_ISC_MEAN], rel=0.01)


def test_inception_score_of_one_class_is_about_one(digits):
    extractor, train, test, _ = digits
    zeros = train.x[train.y == 0]
    assert inception_score(extract_features(extractor, zeros).logits, splits=1).mean < 1.2
    assert inception_score(extract_features(extractor, test.x).logits, splits=1).mean > 7  # 10 balanced classes


def test_reference_statistics_are_cached_with_a_content_hash(digits, digits_cfg, tmp_path, monkeypatch):
    extractor = digits[0]
    first = reference_statistics(extractor, digits_cfg, tmp_path, split="val", n=200)
    assert first.n == 200 and first.describe()["split"] == "val" and len(first.content_hash) == 16
    monkeypatch.setattr(reference_module, "extract_features", lambda *a, **k: pytest.fail("recomputed a cached reference"))
    again = reference_statistics(extractor, digits_cfg, tmp_path, split="val", n=200)
    assert again.content_hash == first.content_hash and torch.equal(again.features, first.features)
    monkeypatch.undo()
    other = reference_statistics(extractor, digits_cfg, tmp_path, split="val", n=100)
    assert other.key != first.key and other.content_hash != first.content_hash
    assert get_backend("diffzoo").fid(first.features[:100], other) == pytest.approx(0.0, abs=1e-6)


def test_missing_classifier_is_retrained_identically(digits_cfg, tmp_path):
    net, card, path = load_or_train_classifier(digits_cfg, tmp_path, epochs=1)
    path.unlink()
    net2, card2, path2 = load_or_train_classifier(digits_cfg, tmp_path, epochs=1)
    assert path2 == path and path.is_file() and card2.test_accuracy == card.test_accuracy
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    assert classifier_path(digits_cfg, tmp_path, "digits", epochs=2) != path  # epochs are part of the key
    assert classifier_path(digits_cfg, tmp_path, "digits", epochs=1, seed=1) != path


def test_extractor_choice():
    assert choose_extractor_kind("auto", (3, 32, 32), labelled=True) == "inception"
    assert choose_extractor_kind("auto", (1, 8, 8), labelled=True) == "classifier"
    assert choose_extractor_kind("auto", (1, 28, 28), labelled=False) == "inception"
    with pytest.raises(ValueError, match="'auto', 'inception', 'classifier'"):
        choose_extractor_kind("clip", (3, 32, 32), labelled=True)
    with pytest.raises(ValueError, match="labelled"):
        choose_extractor_kind("classifier", (3, 64, 64), labelled=False)
    with pytest.raises(ValueError, match="swd"):
        choose_extractor_kind("auto", (2,), labelled=False)


def test_fashion_mnist_classifier_trains_from_the_idx_files(tmp_path):
    """The pipeline on Fashion-MNIST's real file format (random stand-in images: accuracy is not the point)."""
    from diffzoo.data.synthetic import write_fake_fashion_mnist

    write_fake_fashion_mnist(tmp_path / "data", n_train=64, n_test=16)
    cfg = OmegaConf.load(f"{CONFIG_DIR}/data/fashion_mnist.yaml")
    cfg.root, cfg.system_dir, cfg.seed, cfg.image_size = str(tmp_path / "data"), None, 0, 32
    extractor = make_extractor("auto", cfg, (1, 32, 32), True, tmp_path / "cache", epochs=1)
    assert extractor.space == "fashion_mnist"
    ref = reference_statistics(extractor, cfg, tmp_path / "cache", split="train")
    assert ref.n == 64 and ref.features.shape == (64, extractor.feature_dim)
    card = json.loads(classifier_path(cfg, tmp_path / "cache", "fashion_mnist", epochs=1).with_suffix(".json").read_text())
    assert card["n_train"] == 64 and card["n_test"] == 16 and card["data"]["image_size"] == 32
    assert "root" not in card["data"]  # where the files live is not part of the data's identity
