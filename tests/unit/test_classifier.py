"""The noise-aware classifier (ADM §4.1): its network, attention pool and LightningModule."""

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from diffzoo.lit.classifier import NoisyClassifierModule, t_bucket_ranges
from diffzoo.networks import AttentionPool2d, NoisyClassifier
from diffzoo.schedules import DiscreteSchedule, linear_betas


def _tiny_net(**kw):
    args = dict(in_channels=1, image_size=8, num_classes=10, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), num_head_channels=16, num_groups=8)
    return NoisyClassifier(**{**args, **kw})


@pytest.mark.parametrize("pool", ["attention", "mean"])
def test_classifier_maps_noised_images_to_logits(pool):
    net = _tiny_net(pool=pool)
    assert net(torch.randn(3, 1, 8, 8), torch.tensor([0.0, 10.0, 999.0])).shape == (3, 10)
    with pytest.raises(ValueError, match=r"\[B, 1, 8, 8\]"):
        net(torch.randn(3, 1, 16, 16), torch.zeros(3))
    with pytest.raises(ValueError, match="pool"):
        _tiny_net(pool="max")


def test_attention_pool_is_the_mean_token_attending_over_all_positions():
    """CLIP §2.4: softmax(q_0 Kᵀ/√d) V for the mean token, computed here by hand (one head per 4 ch)."""
    torch.manual_seed(0)
    pool = AttentionPool2d(spatial=3, channels=8, num_heads=2, out_dim=5)
    x = torch.randn(2, 8, 3, 3)
    tokens = torch.cat([x.flatten(2).mean(-1, keepdim=True), x.flatten(2)], -1) + pool.positional_embedding  # [B, C, L]
    qkv = torch.einsum("oc,bcl->bol", pool.qkv.weight[:, :, 0], tokens) + pool.qkv.bias[None, :, None]
    q, k, v = qkv.chunk(3, dim=1)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        att = torch.softmax(torch.einsum("bc,bcl->bl", q[:, sl, 0], k[:, sl]) / math.sqrt(4), -1)
        heads.append(torch.einsum("bl,bcl->bc", att, v[:, sl]))
    expected = torch.cat(heads, 1) @ pool.proj.weight[:, :, 0].T + pool.proj.bias
    assert torch.allclose(pool(x), expected, atol=1e-5)


def test_t_bucket_ranges_cover_every_step():
    assert t_bucket_ranges(1000, 4) == [(0, 249), (250, 499), (500, 749), (750, 999)]
    with pytest.raises(ValueError, match="t_buckets"):
        t_bucket_ranges(10, 11)


def test_the_builder_gives_a_classifier_no_objective_or_sampler():
    """A classifier is not a generative model: the builder asks the class which parts it takes, and a
    config that sets a sampler (or an objective) for it is refused, naming the key."""
    from diffzoo.errors import ConfigError
    from diffzoo.lit.build import build_module
    from tests.helpers import compose_train

    assert NoisyClassifierModule.PARTS == ("net", "schedule", "optimizer", "lr_scheduler")
    assert not hasattr(NoisyClassifierModule, "sample") and not hasattr(NoisyClassifierModule, "denoiser")
    cfg = compose_train(["experiment=adm_classifier_digits"])
    cfg.sampler = compose_train(["experiment=ddpm_digits"]).sampler
    with pytest.raises(ConfigError, match="sampler is set but NoisyClassifierModule takes no sampler; set sampler=null"):
        build_module(cfg, (1, 8, 8))


def test_accuracy_rises_as_t_falls_on_a_toy():
    """Two classes of 8x8 images (a bright left or right half): after a short training on x_t at
    random t, the classifier is near-perfect at small t and near chance at t ≈ T (ADM §4.1)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.full((n, 1, 8, 8), -0.6)
        x[y == 0, :, :, :4] = 0.6
        x[y == 1, :, :, 4:] = 0.6
        return x + 0.1 * torch.randn(n, 1, 8, 8, generator=g), y

    net = _tiny_net(num_classes=2, base_channels=8, num_head_channels=8, attention_resolutions=())
    module = NoisyClassifierModule(net, DiscreteSchedule(linear_betas(1000)), partial(torch.optim.Adam, lr=3e-3), t_buckets=4)
    opt = module.optimizer_factory(params=net.parameters())
    for _ in range(60):
        x, y = batch(64)
        loss = F.cross_entropy(module.noised_logits(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    acc = list(module.accuracy_by_t(*batch(600), generator=torch.Generator().manual_seed(1)).values())
    assert acc[0] > 0.95 and acc[-1] < 0.7
    assert acc[0] >= acc[1] >= acc[2] - 0.03 and acc[2] > acc[3]


def test_noised_preview_shows_the_inputs_along_t():
    module = NoisyClassifierModule(_tiny_net(), DiscreteSchedule(linear_betas(100)), partial(torch.optim.Adam))
    module._preview = torch.full((2, 1, 8, 8), 0.5)
    x = module.noised_preview(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 8, 8) and x.abs().max() <= 1
    assert (x[0] - 0.5).abs().mean() < (x[-1] - 0.5).abs().mean()  # cleanest first, noisiest last
