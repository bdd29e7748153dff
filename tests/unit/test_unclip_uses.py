"""unCLIP's uses (Ramesh et al. 2022 §3): slerp, text → image through prior and decoder, variations,
interpolations, text diffs, labelled grids."""

import math

import torch
import torch.nn.functional as F

from diffzoo.lit.unclip import UnCLIP, save_labelled_grid, slerp
from tests.unit.test_unclip_decoder import _module as decoder_module
from tests.unit.test_unclip_prior import _module as prior_module


def test_slerp_closed_form():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    out = slerp(a, b, torch.tensor([0.0, 1 / 3, 0.5, 1.0]))
    torch.testing.assert_close(out[0], a)
    torch.testing.assert_close(out[-1], b)
    # on the great circle the angle grows linearly with θ: θ = 1/3 of 90° is 30°
    torch.testing.assert_close(out[1], torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6), 0.0]))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4))
    # inputs are normalised first; a single θ gives a single vector
    torch.testing.assert_close(slerp(3 * a, 2 * b, 0.5), F.normalize(a + b, dim=0))
    # nearly equal vectors: no NaN, a unit vector between them
    near = slerp(a, F.normalize(a + 1e-9 * b, dim=0), 0.5)
    assert torch.isfinite(near).all() and abs(float(near.norm()) - 1) < 1e-6


def _unclip():
    dec = decoder_module().eval()
    prior = prior_module().eval()
    prior.clip = dec.clip  # one CLIP for both stages, as trained
    return UnCLIP(dec, prior, steps=3)


def test_text_to_image_runs_prior_then_decoder(tmp_path):
    u = _unclip()
    out = u.text_to_image(["a bold digit one", "a thin digit two"], seed=1)
    assert out.images.shape == (2, 1, 8, 8) and out.z_i.shape == (2, 6) and out.labels[0] == "a bold digit one"
    assert save_labelled_grid(out, tmp_path / "t2i.png").is_file()
    base = u.decode_text_embedding(["a bold digit one"])
    torch.testing.assert_close(base.z_i, u.clip.encode_text(["a bold digit one"]).embedding)


def test_variations_interpolations_and_text_diffs():
    u = _unclip()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    var = u.variations(x, 3)
    assert var.images.shape == (6, 1, 8, 8)
    z = u.image_embeddings(x)
    torch.testing.assert_close(var.z_i, z.repeat_interleave(3, 0))
    inter = u.interpolate(x[:1], x[1:], k=5)
    torch.testing.assert_close(inter.z_i[0], z[0])
    torch.testing.assert_close(inter.z_i[-1], z[1])
    diff = u.text_diff(x[:1], "a thin digit one", "a bold digit one", k=4, theta_max=0.5)
    torch.testing.assert_close(diff.z_i[0], z[0])
    z_t = u.clip.encode_text(["a thin digit one", "a bold digit one"]).embedding
    z_d = F.normalize(z_t[1] - z_t[0], dim=0)
    # θ_max = 0.5: halfway along the great circle from z_i to z_d
    torch.testing.assert_close(diff.z_i[-1], slerp(z[0], z_d, 0.5))
    assert float(diff.z_i[-1] @ z_d) > float(diff.z_i[0] @ z_d)


def test_unclip_claims_register_with_their_criteria():
    from diffzoo.claims.papers import unclip  # noqa: F401  (registers on import)
    from diffzoo.claims.registry import CLAIMS, PAPERS

    assert "unCLIP" in PAPERS
    assert CLAIMS["unclip_best_of_two"].paper == "unCLIP"
    assert {c.text for c in CLAIMS["unclip_variations"].criteria} == {"class_agreement > 0.5", "diversity > 0.0"}
