"""The first-stage losses of latent diffusion (LDM App. G; CompVis
``ldm/modules/losses/contperceptual.py::LPIPSWithDiscriminator`` for the KL autoencoder, taming's
``vqperceptual.py::VQLPIPSWithDiscriminator`` for the VQ one).

Generator (autoencoder) step, with ``r = |x − x̂| + w_p · P(x, x̂)`` per pixel (L1 + perceptual):

* KL: ``L = Σ (r / e^s + s) / B + w_kl · KL(q(z|x) ‖ N(0, I)) + λ · f(step) · L_G`` — the
  reconstruction read as a Laplace NLL with a scalar log-scale ``s`` (``logvar``), summed over
  pixels and averaged over the batch, as the code does.
* VQ: ``L = mean(r) + λ · f(step) · L_G + w_cb · L_codebook``.

``L_G = −mean D(x̂)`` (hinge generator loss), ``f(step) = disc_factor`` from ``disc_start`` on and 0
before (taming ``adopt_weight``), and the adaptive weight of VQGAN (Esser et al. 2021, eq. 7)

    λ = disc_weight · clamp(‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_G‖ + 10⁻⁴), 0, 10⁴)

with ``G_L`` the decoder's last conv weight and ``L_rec`` the NLL term (δ = 10⁻⁴ in the code; the
paper writes 10⁻⁶). Discriminator step: the hinge loss ``½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))``
times ``f(step)``.

**Trap** (``train_logvar``): LDM's paper calls ``s`` learned, but the released
``AutoencoderKL.configure_optimizers`` never hands ``loss.logvar`` to an optimizer, so it stays at
``logvar_init`` (0). ``train_logvar=false`` (default) is the code; ``true`` trains it with the
autoencoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..networks.patchgan import NLayerDiscriminator
from .perceptual import make_perceptual

__all__ = ["KLAutoencoderLoss", "VQAutoencoderLoss", "LossTerms", "hinge_d_loss", "adaptive_weight", "adopt_weight"]

ADAPTIVE_EPS = 1e-4       # taming calculate_adaptive_weight: ‖∇nll‖ / (‖∇g‖ + 1e-4)
ADAPTIVE_MAX = 1e4        # ... clamped to [0, 1e4]


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss ``½ (E relu(1 − D(x)) + E relu(1 + D(x̂)))`` (Lim & Ye 2017; taming ``hinge_d_loss``)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adopt_weight(weight: float, step: int, threshold: int) -> float:
    """``weight`` from ``step >= threshold`` on, 0 before (taming ``adopt_weight``)."""
    return weight if step >= threshold else 0.0


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN eq. 7 (Esser et al. 2021): ``clamp(‖∇_{G_L} rec‖ / (‖∇_{G_L} g‖ + 10⁻⁴), 0, 10⁴)``, detached
    (scalar); ``last_layer`` is the decoder's last weight. Keeps both graphs for the backward pass."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + ADAPTIVE_EPS)).clamp(0.0, ADAPTIVE_MAX).detach()


@dataclass
class LossTerms:
    """A loss to back-propagate and the scalars to log (names without the ``train/`` prefix)."""

    loss: torch.Tensor
    logs: dict = field(default_factory=dict)


class _AdversarialLoss(nn.Module):
    """What both first-stage losses share: the perceptual distance, the PatchGAN discriminator, the
    hinge losses, ``disc_start`` and the adaptive weight. Subclasses implement :meth:`rec_terms`."""

    kind = "?"

    def __init__(self, *, disc_start: int, disc_weight: float, disc_factor: float, disc_num_layers: int, disc_ndf: int,
                 disc_in_channels: int, perceptual: str, perceptual_weight: float, perceptual_seed: int):
        super().__init__()
        self.disc_start, self.disc_weight, self.disc_factor = int(disc_start), float(disc_weight), float(disc_factor)
        self.perceptual_weight = float(perceptual_weight)
        self.perceptual = make_perceptual(perceptual, disc_in_channels, seed=perceptual_seed)
        self.discriminator = NLayerDiscriminator(disc_in_channels, ndf=disc_ndf, n_layers=disc_num_layers)

    @property
    def description(self) -> str:
        """One line saying which perceptual distance is used (printed at the start of training)."""
        return self.perceptual.description

    def pixel_rec(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        """``|x − x̂| + w_p · P(x, x̂)`` per pixel ``[B, C, H, W]``."""
        r = (x - x_rec).abs()
        if self.perceptual_weight > 0:
            r = r + self.perceptual_weight * self.perceptual(x, x_rec)
        return r

    def rec_terms(self, x: torch.Tensor, out) -> tuple[torch.Tensor, torch.Tensor, dict]:  # pragma: no cover - abstract
        """``(nll, regulariser term, logs)`` of one autoencoder output."""
        raise NotImplementedError

    def generator_loss(self, x: torch.Tensor, out, step: int, last_layer: torch.Tensor | None) -> LossTerms:
        """The autoencoder's loss at optimizer step ``step`` (``out``: an
        :class:`~diffzoo.networks.autoencoder.AutoencoderOutput`; ``last_layer``: the decoder's last
        weight, ``None`` to skip the adaptive weight, e.g. without gradients)."""
        nll, reg, logs = self.rec_terms(x, out)
        g_loss = -self.discriminator(out.x_rec).mean()
        factor = adopt_weight(self.disc_factor, step, self.disc_start)
        if factor > 0 and last_layer is not None and torch.is_grad_enabled():
            d_weight = adaptive_weight(nll, g_loss, last_layer) * self.disc_weight
        else:  # before disc_start the GAN term is multiplied by 0: its weight does not matter
            d_weight = torch.zeros((), device=x.device)
        loss = nll + reg + d_weight * factor * g_loss
        logs.update(g_loss=g_loss.detach(), d_weight=d_weight, disc_factor=torch.tensor(factor), ae_loss=loss.detach())
        return LossTerms(loss, logs)

    def discriminator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, step: int) -> LossTerms:
        """The discriminator's hinge loss on real ``x`` and detached reconstructions ``x̂``."""
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(x_rec.detach())
        d_loss = adopt_weight(self.disc_factor, step, self.disc_start) * hinge_d_loss(logits_real, logits_fake)
        return LossTerms(d_loss, {"d_loss": d_loss.detach(), "logits_real": logits_real.detach().mean(),
                                  "logits_fake": logits_fake.detach().mean()})


class KLAutoencoderLoss(_AdversarialLoss):
    """LDM's ``LPIPSWithDiscriminator`` (see the module docstring). Defaults: the kl-f4 / kl-f8
    configs (``disc_start`` 50001, ``kl_weight`` 1e-6, ``disc_weight`` 0.5, 3 layers).

    Args:
        kl_weight: ``w_kl``. logvar_init: initial ``s``. train_logvar: hand ``s`` to the optimizer
            (not in the released code). perceptual: one of ``lpips``, ``random_features``, ``none``.
    """

    kind = "kl"

    def __init__(self, *, disc_start: int = 50001, kl_weight: float = 1e-6, disc_weight: float = 0.5,
                 disc_factor: float = 1.0, disc_num_layers: int = 3, disc_ndf: int = 64, disc_in_channels: int = 3,
                 logvar_init: float = 0.0, train_logvar: bool = False, perceptual: str = "lpips",
                 perceptual_weight: float = 1.0, perceptual_seed: int = 0):
        super().__init__(disc_start=disc_start, disc_weight=disc_weight, disc_factor=disc_factor,
                         disc_num_layers=disc_num_layers, disc_ndf=disc_ndf, disc_in_channels=disc_in_channels,
                         perceptual=perceptual, perceptual_weight=perceptual_weight, perceptual_seed=perceptual_seed)
        self.kl_weight = float(kl_weight)
        self.train_logvar = bool(train_logvar)
        self.logvar = nn.Parameter(torch.full((), float(logvar_init)), requires_grad=self.train_logvar)

    def rec_terms(self, x, out):
        r = self.pixel_rec(x, out.x_rec)
        nll = (r / torch.exp(self.logvar) + self.logvar).sum() / x.shape[0]  # contperceptual.py: sum / B
        return nll, self.kl_weight * out.reg_loss, {"rec_loss": r.detach().mean(), "nll_loss": nll.detach(),
                                                     "kl_loss": out.reg_loss.detach(), "logvar": self.logvar.detach()}

    def generator_parameters(self) -> list[nn.Parameter]:
        """Loss parameters the autoencoder's optimizer trains (``logvar`` when ``train_logvar``)."""
        return [self.logvar] if self.train_logvar else []


class VQAutoencoderLoss(_AdversarialLoss):
    """taming's ``VQLPIPSWithDiscriminator`` (see the module docstring). Defaults: LDM's vq-f4 config
    (``disc_start`` 0, ``disc_weight`` 0.75, ``codebook_weight`` 1.0, 3 layers).

    Args:
        codebook_weight: ``w_cb`` on the quantizer's codebook + commitment loss.
    """

    kind = "vq"

    def __init__(self, *, disc_start: int = 0, disc_weight: float = 0.75, codebook_weight: float = 1.0,
                 disc_factor: float = 1.0, disc_num_layers: int = 3, disc_ndf: int = 64, disc_in_channels: int = 3,
                 perceptual: str = "lpips", perceptual_weight: float = 1.0, perceptual_seed: int = 0):
        super().__init__(disc_start=disc_start, disc_weight=disc_weight, disc_factor=disc_factor,
                         disc_num_layers=disc_num_layers, disc_ndf=disc_ndf, disc_in_channels=disc_in_channels,
                         perceptual=perceptual, perceptual_weight=perceptual_weight, perceptual_seed=perceptual_seed)
        self.codebook_weight = float(codebook_weight)

    def rec_terms(self, x, out):
        r = self.pixel_rec(x, out.x_rec)
        nll = r.mean()
        logs = {"rec_loss": r.detach().mean(), "nll_loss": nll.detach(), "codebook_loss": out.reg_loss.detach()}
        logs.update({k: v.detach() for k, v in out.stats.items()})
        return nll, self.codebook_weight * out.reg_loss, logs

    def generator_parameters(self) -> list[nn.Parameter]:
        return []


def check_loss_fits(loss: nn.Module, net: nn.Module) -> None:
    """Raise :class:`ConfigError` unless the loss is for the autoencoder's kind and image channels."""
    if getattr(loss, "kind", None) != getattr(net, "kind", None):
        raise ConfigError(f"objective is a {getattr(loss, 'kind', '?')} loss but net is a {getattr(net, 'kind', '?')} "
                          f"autoencoder; set objective=ae_{getattr(net, 'kind', '?')}")
    if loss.discriminator.in_channels != net.out_channels:
        raise ConfigError(f"objective.disc_in_channels={loss.discriminator.in_channels} but the autoencoder outputs "
                          f"{net.out_channels} channels; set objective.disc_in_channels={net.out_channels}")
