"""One-GPU benchmark of the DDPM CIFAR-10 U-Net (35.7M parameters): training images/s and DDIM-50
sampling images/s in fp32 / TF32 / bf16 / channels_last / compiled, against diffusers' ``UNet2DModel``
with the same config, plus model FLOPs utilisation. Under 5 minutes on an H100-class GPU: past ``--budget`` seconds (220)
no new variant starts, and the skipped ones are listed in the JSON.

    python benchmarks/gpu.py --out results/          # writes gpu.json, prints the tables

Every variant is timed in this process with CUDA synchronisation (median of blocks); MFU is the
FLOPs of one training step (counted by ``torch.utils.flop_counter`` on the real step: forward +
backward, 2 FLOPs per multiply-add) divided by its time and by a peak — both the dense bf16 peak
measured here with an 8192³ matmul and the datasheet's. A variant that fails is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `diffzoo` importable
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "src")]

from benchmarks.harness import median  # noqa: E402
from benchmarks.models import diffusers_unet, num_parameters, our_unet  # noqa: E402

T = 1000
DEVICE = "cuda"  # --device cpu checks the script's wiring on a machine without a GPU
DATASHEET_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM parts


def cuda_time(fn, iters: int, blocks: int = 3) -> float:
    """Median over ``blocks`` of the mean seconds per ``fn()`` call over ``iters`` calls."""
    from benchmarks.harness import sync

    results = []
    for _ in range(blocks):
        sync(DEVICE)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(DEVICE)
        results.append((time.perf_counter() - start) / iters)
    return median(results)


def measured_bf16_peak() -> float:
    """TFLOP/s of an 8192³ bf16 matmul (mean of 10 after 3 warm-ups)."""
    n = 8192 if DEVICE == "cuda" else 256
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    seconds = cuda_time(lambda: a @ b, iters=10, blocks=1)
    return 2 * n**3 / seconds / 1e12


class TrainStep:
    """One DDPM training step (L_simple, Adam 2e-4, clip 1, EMA 0.9999) of ``net`` on ``batch`` images.

    ``kind``: ``ours`` (diffzoo's objective, schedule and EMA) or ``diffusers`` (DDPMScheduler.add_noise
    and EMAModel, as in diffusers' training example)."""

    def __init__(self, kind: str, batch: int, bf16: bool, channels_last: bool = False, fused: bool = False,
                 compile: bool = False):
        torch.manual_seed(0)
        self.kind, self.bf16, self.channels_last = kind, bf16, channels_last
        self.net = (our_unet("cifar10") if kind == "ours" else diffusers_unet("cifar10")).to(DEVICE)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=2e-4, **({"fused": True} if fused else {}))
        self.x = torch.rand(batch, 3, 32, 32, device=DEVICE) * 2 - 1
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        if kind == "ours":
            from diffzoo.objectives import SimpleLoss
            from diffzoo.optim.ema import EMA
            from diffzoo.schedules import DiscreteSchedule, linear_betas

            self.schedule = DiscreteSchedule(linear_betas(T)).to(DEVICE)
            self.objective = SimpleLoss()
            self.ema = EMA(self.net, decay=0.9999)
        else:
            import diffusers
            from diffusers.training_utils import EMAModel

            self.scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
            self.scheduler.alphas_cumprod = self.scheduler.alphas_cumprod.to(DEVICE)
            self.ema = EMAModel(self.net.parameters(), decay=0.9999)
        if compile:
            self.net.compile()

    def loss(self) -> torch.Tensor:
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=self.bf16):
            if self.kind == "ours":
                return self.objective(self.net, self.schedule, self.x).loss
            eps = torch.randn_like(self.x)
            t = torch.randint(0, T, (self.x.shape[0],), device=DEVICE)
            x_t = self.scheduler.add_noise(self.x, eps, t)
            return F.mse_loss(self.net(x_t, t).sample.float(), eps)

    def __call__(self) -> None:
        loss = self.loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        if self.kind == "ours":
            self.ema.update(self.net)
        else:
            self.ema.step(self.net.parameters())


def train_flops(batch: int) -> float:
    """FLOPs of one forward + backward of our U-Net at ``batch`` (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    step = TrainStep("ours", batch, bf16=False)
    with FlopCounterMode(display=False) as counter:
        step.loss().backward()
    return float(counter.get_total_flops())


def lightning_images_per_s(batch: int, steps: int, precision: str, perf: dict) -> float:
    """Our DiffusionModule through a bare-bones Lightning Trainer (no logger / checkpoints), fed by
    4 loader workers (pinned memory on a GPU)."""
    from benchmarks.bench_train import LightningRun

    data = dict(n=4096, num_workers=4, pin_memory=DEVICE == "cuda", persistent_workers=True)
    run = LightningRun("cifar10", batch, precision, perf, accelerator="gpu" if DEVICE == "cuda" else "cpu",
                       lr_warmup=False, data=data)
    return batch / run.run(steps, skip=5)


def sampling_images_per_s(kind: str, batch: int, bf16: bool, compile: bool = False, channels_last: bool = False) -> float:
    """DDIM-50 (η = 0) images/s: our sampler + our U-Net, or diffusers' DDIMPipeline + UNet2DModel."""
    torch.manual_seed(0)
    if kind == "ours":
        from diffzoo.samplers import ddim
        from diffzoo.schedules import DiscreteSchedule, linear_betas

        net = our_unet("cifar10").to(DEVICE).eval()
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if compile:
            net.compile()
        schedule = DiscreteSchedule(linear_betas(T)).to(DEVICE)
        x_T = torch.randn(batch, 3, 32, 32, device=DEVICE)

        def run():
            with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
                ddim(lambda x, t: net(x, t.float()), schedule, x_T, steps=50, eta=0.0)
    else:
        import diffusers

        unet = diffusers_unet("cifar10").to(DEVICE).eval()
        pipe = diffusers.DDIMPipeline(unet, diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=False))
        pipe.set_progress_bar_config(disable=True)

        def run():
            with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
                pipe(batch_size=batch, num_inference_steps=50, eta=0.0, output_type="np")
    run()  # warm-up (and compilation)
    return batch / cuda_time(run, iters=1, blocks=3)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--batch", type=int, default=128, help="training batch (DDPM CIFAR-10: 128)")
    parser.add_argument("--sample-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per block")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only checks the wiring (use tiny sizes)")
    parser.add_argument("--sections", default="train,sampling", help="comma-separated: train, lightning, sampling "
                        "(train includes the Lightning rows)")
    parser.add_argument("--budget", type=float, default=220.0, help="seconds; later variants are skipped past it")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU; on a CPU run `make bench` (or --device cpu to check the wiring)")
    started = time.perf_counter()
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    result: dict = {"device": name, "torch": torch.__version__, "batch": args.batch, "train": {}, "sampling": {}, "errors": {}}
    print(f"{name}, torch {torch.__version__}; DDPM CIFAR-10 U-Net {num_parameters(our_unet('cifar10')) / 1e6:.1f}M parameters", flush=True)
    peak = measured_bf16_peak()
    datasheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)
    flops = train_flops(args.batch)
    result.update(measured_bf16_tflops=peak, datasheet_bf16_tflops=datasheet, train_flops_per_step=flops)
    print(f"bf16 matmul peak measured: {peak:.0f} TFLOP/s (datasheet {datasheet}); one training step: {flops / 1e12:.2f} TFLOP", flush=True)

    def over_budget() -> bool:
        return time.perf_counter() - started > args.budget

    train_variants = [
        ("ours fp32", dict(kind="ours", bf16=False), "highest"),
        ("ours TF32", dict(kind="ours", bf16=False), "high"),
        ("ours bf16", dict(kind="ours", bf16=True), "high"),
        ("ours bf16 + channels_last + fused Adam", dict(kind="ours", bf16=True, channels_last=True, fused=True), "high"),
        ("diffusers fp32", dict(kind="diffusers", bf16=False), "highest"),
        ("diffusers TF32", dict(kind="diffusers", bf16=False), "high"),
        ("diffusers bf16", dict(kind="diffusers", bf16=True), "high"),
    ]
    if not args.no_compile:
        train_variants.append(("ours bf16 + channels_last + fused + compile",
                               dict(kind="ours", bf16=True, channels_last=True, fused=True, compile=True), "high"))
    sections = set(args.sections.split(","))
    for label, kw, matmul in train_variants if "train" in sections else []:
        if over_budget():
            result["errors"][label] = "skipped: time budget"
            continue
        try:
            torch.set_float32_matmul_precision(matmul)
            step = TrainStep(batch=args.batch, **kw)
            for _ in range(3):
                step()
            seconds = cuda_time(step, iters=args.steps)
            tflops = flops / seconds / 1e12
            result["train"][label] = {"images_per_s": args.batch / seconds, "ms_per_step": 1000 * seconds,
                                      "tflops": tflops, "mfu_measured_peak": tflops / peak,
                                      "mfu_datasheet": tflops / datasheet if datasheet else None}
            print(f"train  {label:48s} {args.batch / seconds:8.0f} img/s  {tflops:6.1f} TFLOP/s  MFU {tflops / peak:.1%}", flush=True)
            del step
        except Exception as exc:  # report and go on
            result["errors"][label] = f"{type(exc).__name__}: {exc}"[:400]
            print(f"train  {label}: FAILED {result['errors'][label]}", flush=True)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    torch.set_float32_matmul_precision("high")
    lightning_variants = [
        ("Lightning bf16-mixed + channels_last + fused Adam", "bf16-mixed",
         {"channels_last": True, "fused_optimizer": True, "matmul_precision": "high"}),
    ]
    if not args.no_compile:
        lightning_variants.append(("Lightning perf=gpu (bf16, channels_last, fused, compile)", "bf16-mixed",
                                   {"channels_last": True, "fused_optimizer": True, "matmul_precision": "high",
                                    "compile": True, "cudnn_benchmark": True}))
    for label, precision, perf in lightning_variants if sections & {"train", "lightning"} else []:
        if over_budget():
            result["errors"][label] = "skipped: time budget"
            continue
        try:
            ips = lightning_images_per_s(args.batch, args.steps * 2, precision, perf)
            result["train"][label] = {"images_per_s": ips, "tflops": flops * ips / args.batch / 1e12}
            print(f"train  {label:48s} {ips:8.0f} img/s  (Trainer.fit, data loader with 4 workers)", flush=True)
        except Exception as exc:
            result["errors"][label] = f"{type(exc).__name__}: {exc}"[:400]
            print(f"train  {label}: FAILED {result['errors'][label]}", flush=True)
    sample_variants = [
        ("ours fp32 (TF32)", dict(kind="ours", bf16=False)),
        ("diffusers fp32 (TF32)", dict(kind="diffusers", bf16=False)),
        ("ours bf16", dict(kind="ours", bf16=True)),
        ("diffusers bf16", dict(kind="diffusers", bf16=True)),
    ]
    if not args.no_compile:
        sample_variants.append(("ours bf16 + channels_last + compile", dict(kind="ours", bf16=True, compile=True, channels_last=True)))
    for label, kw in sample_variants if "sampling" in sections else []:
        if over_budget():
            result["errors"][f"sampling {label}"] = "skipped: time budget"
            continue
        try:
            ips = sampling_images_per_s(batch=args.sample_batch, **kw)
            result["sampling"][label] = {"images_per_s": ips}
            print(f"sample {label:48s} {ips:8.1f} img/s  (DDIM-50, batch {args.sample_batch})", flush=True)
        except Exception as exc:
            result["errors"][f"sampling {label}"] = f"{type(exc).__name__}: {exc}"[:400]
            print(f"sample {label}: FAILED {result['errors'][f'sampling {label}']}", flush=True)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    result["seconds"] = round(time.perf_counter() - started, 1)
    for section in ("train", "sampling"):
        rows = result[section]
        for base in ("ours fp32", "ours fp32 (TF32)"):
            if base in rows:
                for row in rows.values():
                    row["ratio_vs_" + base.replace(" ", "_")] = row["images_per_s"] / rows[base]["images_per_s"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out / 'gpu.json'} in {result['seconds']} s")
    return result


if __name__ == "__main__":
    main()
