"""Sampling speed: our DDPM / DDIM-50 against diffusers' pipelines on the same weights, and each
sampler's own overhead per step (time spent outside the network, measured with a trivial net).

"Same weights": both sides call one diffusers ``UNet2DModel`` (the matched config of our digits
U-Net), so the rows differ only in the sampler loop; a third row runs our own U-Net of the same
architecture. That the samples agree (same noise, float tolerance) is tested in
``tests/unit/test_diffusers_equivalence.py``.
"""

from __future__ import annotations

from functools import partial

import torch

from .harness import Measurement, Section, interleave, median, timed
from .models import diffusers_unet, net_config, our_unet

__all__ = ["sampling_section", "sampler_overhead_section"]

T = 1000


def _schedule():
    from diffzoo.schedules import DiscreteSchedule, linear_betas

    return DiscreteSchedule(linear_betas(T))


def _ours(eps_fn, kind: str, steps: int, x_T: torch.Tensor, seed: int):
    from diffzoo.samplers import ddim, ddpm
    from diffzoo.schedules.discrete import spaced_timesteps

    gen = torch.Generator().manual_seed(seed)
    schedule = _schedule()
    if kind == "ddim":
        return ddim(eps_fn, schedule, x_T, steps=steps, eta=0.0, generator=gen)
    if steps < T:
        schedule = schedule.respace(spaced_timesteps(T, steps, "even"))
    return ddpm(eps_fn, schedule, x_T, variance="fixedsmall", clip_x0=True, generator=gen)


def _pipeline(unet, kind: str, steps: int, batch: int, seed: int):
    import diffusers

    if kind == "ddim":
        pipe = diffusers.DDIMPipeline(unet, diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=False))
        kwargs = {"eta": 0.0}
    else:
        pipe = diffusers.DDPMPipeline(unet, diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear"))
        kwargs = {}
    pipe.set_progress_bar_config(disable=True)
    return lambda: pipe(batch_size=batch, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                        output_type="np", **kwargs)


def sampling_section(kind: str, steps: int, batch: int, repeats: int, name: str = "digits") -> Section:
    """Seconds per image of ``kind`` (``ddpm`` or ``ddim``, η = 0) with ``steps`` network calls."""
    torch.manual_seed(0)
    unet = diffusers_unet(name).eval()
    ours_net = our_unet(name).eval()
    shape = (batch, *(net_config(name)[k] for k in ("in_channels", "image_size", "image_size")))
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def via_unet2d(x, t):
        return unet(x, t).sample

    def via_ours(x, t):
        return ours_net(x, t.float())

    with torch.inference_mode():
        pipe = _pipeline(unet, kind, steps, batch, 0)
        variants = {
            "diffusers pipeline": lambda: timed(pipe) / batch,
            "diffzoo sampler (same UNet2DModel)": lambda: timed(partial(_ours, via_unet2d, kind, steps, x_T, 0)) / batch,
            "diffzoo sampler + diffzoo U-Net": lambda: timed(partial(_ours, via_ours, kind, steps, x_T, 0)) / batch,
        }
        seconds = interleave(variants, repeats=repeats, warmup=1)
    label = f"DDIM-{steps} (η = 0)" if kind == "ddim" else f"DDPM, {steps} steps (σ² = β̃)"
    section = Section(f"Sampling — {label}, {name} U-Net, batch {batch}", baseline="diffusers pipeline", notes=[
        "same weights: one diffusers UNet2DModel serves the first two rows; the third uses our U-Net of the same "
        "architecture and parameter count; samples agree with diffusers' (tests/unit/test_diffusers_equivalence.py)"])
    for variant, values in seconds.items():
        section.add(Measurement(variant, 1000 * median(values), "ms/image", [1000 * v for v in values]))
    return section.finish()


def sampler_overhead_section(batch: int, steps: int, repeats: int) -> Section:
    """Microseconds per step spent by each sampler outside the network (the net is ``0.1·x``)."""
    import diffusers

    x_T = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def trivial(x, t):
        return 0.1 * x

    def diffusers_loop(scheduler, **step_kwargs):
        scheduler.set_timesteps(steps)
        gen = torch.Generator().manual_seed(0)
        x = x_T
        for t in scheduler.timesteps:
            x = scheduler.step(trivial(x, t), t, x, generator=gen, **step_kwargs).prev_sample
        return x

    ddpm_sched = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
    ddim_sched = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=False)
    variants = {
        "diffusers DDPMScheduler.step": lambda: timed(partial(diffusers_loop, ddpm_sched)) / steps,
        "diffzoo ddpm": lambda: timed(partial(_ours, trivial, "ddpm", steps, x_T, 0)) / steps,
        "diffusers DDIMScheduler.step": lambda: timed(partial(diffusers_loop, ddim_sched, eta=0.0)) / steps,
        "diffzoo ddim": lambda: timed(partial(_ours, trivial, "ddim", steps, x_T, 0)) / steps,
    }
    with torch.inference_mode():
        seconds = interleave(variants, repeats=repeats, warmup=1)
    section = Section(f"Sampler overhead per step — trivial net, batch {batch}×3×32×32, {steps} steps",
                      baseline="diffusers DDPMScheduler.step")
    for variant, values in seconds.items():
        section.add(Measurement(variant, 1e6 * median(values), "µs/step", [1e6 * v for v in values]))
    return section.finish()
