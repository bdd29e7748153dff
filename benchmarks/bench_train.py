"""Training-step throughput: ``DiffusionModule`` through the Lightning ``Trainer`` against a bare
PyTorch loop doing the same work, and against a diffusers ``UNet2DModel`` + ``DDPMScheduler`` loop
with the matched configuration; plus the fast-path switches (bf16 autocast, channels_last, fused
Adam, torch.compile) on our side.

Same work everywhere: the same network size, batch, data loader (our resumable infinite sampler
over an in-memory set), DDPM's L_simple (t ~ U{0..T−1}, ε ~ N(0, I), MSE), Adam (lr 2e-4) with
linear warm-up, gradient clipping at norm 1 and a weight EMA (decay 0.9999) after every step.
"""

from __future__ import annotations

import time
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F

from .harness import Measurement, Section, interleave, median
from .models import diffusers_unet, net_config, num_parameters, our_unet

__all__ = ["train_step_section"]

T = 1000
LR = 2e-4
WARMUP = 5000


def loader(name: str, batch: int, seed: int = 0, n: int = 512, **loader_kwargs):
    """An endless loader of ``n`` random uint8 images shaped for net ``name`` (our resumable sampler)."""
    from torch.utils.data import DataLoader

    from diffzoo.data.base import InMemoryDataset, collate_batch
    from diffzoo.data.sampler import InfiniteBatchSampler

    cfg = net_config(name)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, cfg["in_channels"], cfg["image_size"], cfg["image_size"]), generator=g, dtype=torch.uint8)
    dataset = InMemoryDataset(images)
    return DataLoader(dataset, batch_sampler=InfiniteBatchSampler(n, batch, seed, 0, 1), collate_fn=collate_batch,
                      **loader_kwargs)


def _warmup_lambda(step: int) -> float:
    return min(1.0, (step + 1) / WARMUP)


class _Loop:
    """A training loop timed in seconds per step; subclasses define ``step()``."""

    def step(self) -> None:
        raise NotImplementedError

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


class _BareLoop(_Loop):
    """The hand-written loop: what a researcher would write without a framework."""

    def __init__(self, name: str, batch: int, precision: str = "32", channels_last: bool = False, fused: bool = False):
        from diffzoo.schedules import linear_betas

        torch.manual_seed(0)
        self.net = our_unet(name)
        self.ema = [p.detach().clone() for p in self.net.parameters()]
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR, **({"fused": True} if fused else {}))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _warmup_lambda)
        abar = torch.cumprod(1 - linear_betas(T), 0)
        self.sqrt_abar, self.sqrt_1m_abar = abar.sqrt().float(), (1 - abar).sqrt().float()
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.autocast = precision == "bf16-mixed"
        self.batches = iter(loader(name, batch))

    def step(self) -> None:
        x0 = next(self.batches)["x"]
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, T, (x0.shape[0],))
        eps = torch.randn_like(x0)
        x_t = self.sqrt_abar[t].view(-1, 1, 1, 1) * x0 + self.sqrt_1m_abar[t].view(-1, 1, 1, 1) * eps  # DDPM eq. 4
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            loss = F.mse_loss(self.net(x_t, t.float()).float(), eps)  # DDPM eq. 14 (L_simple)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.net.parameters()], 1 - 0.9999)


class _DiffusersLoop(_Loop):
    """diffusers' own training recipe (its ``train_unconditional`` example): ``UNet2DModel``,
    ``DDPMScheduler.add_noise``, MSE on ε, AdamW-free Adam to match, clipping, ``EMAModel``."""

    def __init__(self, name: str, batch: int):
        import diffusers
        from diffusers.training_utils import EMAModel

        torch.manual_seed(0)
        self.net = diffusers_unet(name)
        self.scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
        self.ema = EMAModel(self.net.parameters(), decay=0.9999, use_ema_warmup=False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _warmup_lambda)
        self.batches = iter(loader(name, batch))

    def step(self) -> None:
        x0 = next(self.batches)["x"]
        eps = torch.randn_like(x0)
        t = torch.randint(0, T, (x0.shape[0],))
        x_t = self.scheduler.add_noise(x0, eps, t)
        loss = F.mse_loss(self.net(x_t, t).sample, eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.ema.step(self.net.parameters())


class StepTimer(L.Callback):
    """Wall time from the start of step ``skip`` to the end of the last step of a fit."""

    def __init__(self, skip: int):
        self.skip, self.start, self.end = skip, 0.0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.skip:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


class LightningRun:
    """Our ``DiffusionModule`` (built from the shipped configs) fitted by a bare-bones Trainer
    (no logger, checkpoints or progress bar: what is timed is the step, not the I/O).

    ``lr_warmup``: DDPM's linear warm-up (as the bare loop); ``data``: keyword arguments of
    :func:`loader` (``n``, ``num_workers``, ``pin_memory``, …)."""

    def __init__(self, name: str, batch: int, precision: str = "32-true", perf: dict | None = None,
                 accelerator: str = "cpu", lr_warmup: bool = True, data: dict | None = None):
        from diffzoo.lit.fast_paths import apply_fast_paths

        self.name, self.batch, self.precision, self.accelerator = name, batch, precision, accelerator
        self.data = data or {}
        self.module = self._build(lr_warmup)
        apply_fast_paths(self.module, perf or {})

    def _build(self, lr_warmup: bool):
        from diffzoo.lit import DiffusionModule
        from diffzoo.objectives import SimpleLoss
        from diffzoo.optim.warmup import linear_warmup
        from diffzoo.samplers import ddpm
        from diffzoo.schedules import DiscreteSchedule, linear_betas

        torch.manual_seed(0)
        return DiffusionModule(
            net=our_unet(self.name), schedule=DiscreteSchedule(linear_betas(T)), objective=SimpleLoss(),
            sampler=ddpm, optimizer=partial(torch.optim.Adam, lr=LR),
            lr_scheduler=partial(linear_warmup, warmup_steps=WARMUP) if lr_warmup else None, ema_decay=0.9999,
        )

    def run(self, steps: int, skip: int = 2) -> float:
        """Seconds per step over ``steps`` steps after ``skip`` warm-up steps (compilation, caches)."""
        timer = StepTimer(skip)
        trainer = L.Trainer(
            accelerator=self.accelerator, devices=1, max_steps=skip + steps, precision=self.precision,
            gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[timer], limit_val_batches=0, num_sanity_val_steps=0,
            use_distributed_sampler=False, log_every_n_steps=50,
        )
        trainer.fit(self.module, train_dataloaders=loader(self.name, self.batch, **self.data))
        return (timer.end - timer.start) / steps


def train_step_section(name: str, batch: int, steps: int, repeats: int, fast_paths: bool = True,
                       with_diffusers: bool = True, compile: bool = False) -> Section:
    """Images/s of each variant (median of ``repeats`` interleaved blocks of ``steps`` steps)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    bare = _BareLoop(name, batch)
    ours = LightningRun(name, batch)
    variants = {"bare PyTorch loop": partial(bare.run, steps), "diffzoo (Lightning Trainer)": partial(ours.run, steps)}
    notes = [f"net {name}: {num_parameters(bare.net) / 1e6:.2f}M parameters, batch {batch}, {steps} steps per block, "
             f"median of {repeats} interleaved blocks"]
    if with_diffusers:
        try:
            theirs = _DiffusersLoop(name, batch)
            variants["diffusers UNet2DModel loop"] = partial(theirs.run, steps)
            notes.append(f"diffusers UNet2DModel with the matched config: {num_parameters(theirs.net) / 1e6:.2f}M parameters")
        except ImportError:
            notes.append("diffusers not installed (pip install -e .[bench]): its row is skipped")
    if fast_paths:
        variants["bare loop + bf16 autocast"] = partial(_BareLoop(name, batch, precision="bf16-mixed").run, steps)
        variants["diffzoo + bf16-mixed"] = partial(LightningRun(name, batch, precision="bf16-mixed").run, steps)
        variants["diffzoo + channels_last"] = partial(LightningRun(name, batch, perf={"channels_last": True}).run, steps)
        variants["diffzoo + fused Adam"] = partial(LightningRun(name, batch, perf={"fused_optimizer": True}).run, steps)
    if compile:
        variants["diffzoo + torch.compile"] = partial(LightningRun(name, batch, perf={"compile": True}).run, steps)
    seconds = interleave(variants, repeats=repeats, warmup=1)
    section = Section(f"Training step — {name} U-Net, batch {batch}", baseline="bare PyTorch loop",
                      higher_is_better=True, notes=notes)
    for variant, values in seconds.items():
        per_second = [batch / v for v in values]
        section.add(Measurement(variant, median(per_second), "images/s", per_second))
    return section.finish()
