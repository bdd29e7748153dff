"""Weight EMA and LR warm-up against their closed forms."""

import pytest
import torch
from torch import nn

from diffzoo.optim import EMA, linear_warmup


def test_ema_geometric_closed_form():
    """With parameters held at θ, k updates give shadow = θ + d^k (θ_0 − θ)."""
    model = nn.Linear(3, 2)
    theta0 = [p.detach().clone() for p in model.parameters()]
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for _ in range(7):
        ema.update(model)
    for s, p, p0 in zip(ema.shadow.parameters(), model.parameters(), theta0):
        assert torch.allclose(s, p + 0.9**7 * (p0 - p), atol=1e-6)
    assert int(ema.num_updates) == 7
    assert not any(p.requires_grad for p in ema.shadow.parameters())


def test_ema_warmup_decay_sequence():
    ema = EMA(nn.Linear(1, 1), decay=0.999, warmup=True)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(nn.Linear(1, 1))
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])  # min(d, (1+k)/(10+k))
    big = EMA(nn.Linear(1, 1), decay=0.5, warmup=True)
    big.num_updates.fill_(100)
    assert big.current_decay() == 0.5


def test_ema_shadow_stays_in_eval_mode_and_is_in_state_dict():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    ema = EMA(model, decay=0.99)
    ema.train()
    assert not ema.shadow.training
    assert {"shadow.0.weight", "num_updates"} <= set(ema.state_dict())


def test_invalid_decay():
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        EMA(nn.Linear(1, 1), decay=1.0)


def test_linear_warmup():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = linear_warmup(opt, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5e-4, 1e-4, 1.5e-4, 2e-4, 2e-4, 2e-4])
    state = sched.state_dict()  # what Lightning stores in checkpoints
    assert state["last_epoch"] == 6
