"""Classification Accuracy Score (Ravuri & Vinyals 2019): a perfect generator — fresh draws of the real
data — scores the classifier's own real-data accuracy within noise; a generator with the wrong labels
scores chance."""

import math

import torch

from diffzoo.metrics.cas import classification_accuracy_score


def _bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A labelled image distribution with a known Bayes error: class k ∈ {0…7} is a bright row k on an 8×8
    canvas, under heavy Gaussian noise (σ = 1.2 in [-1, 1] units), quantised to uint8."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 8, (n,), generator=g)
    x = torch.full((n, 1, 8, 8), -0.6)
    x[torch.arange(n), 0, y, :] = 0.6
    x = (x + 1.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8), y


def test_cas_of_the_real_distribution_is_the_real_data_accuracy_and_wrong_labels_score_chance():
    gen_x, gen_y = _bars(1000, 1)    # the "generator": fresh draws of the data distribution
    real_x, real_y = _bars(1000, 2)  # the real training images
    test_x, test_y = _bars(1000, 3)
    res = classification_accuracy_score(gen_x, gen_y, test_x, test_y, 8, real_x, real_y, epochs=3, seed=0)
    assert res.n_train == 1000 and res.n_test == 1000
    assert res.real_accuracy > 0.5  # the task is learnable (chance: 1/8)
    # two classifiers of the same recipe on two samples of one distribution: their test accuracies differ by
    # sampling noise only (binomial std on 1000 test images, per classifier, times √2; 4σ)
    p = res.real_accuracy
    assert abs(res.cas - p) < 4 * math.sqrt(2 * p * (1 - p) / 1000) + 0.02
    shuffled = gen_y[torch.randperm(1000, generator=torch.Generator().manual_seed(4))]
    bad = classification_accuracy_score(gen_x, shuffled, test_x, test_y, 8, epochs=3, seed=0)
    assert bad.real_accuracy is None and bad.cas < 0.125 + 4 * math.sqrt(0.125 * 0.875 / 1000) + 0.03
