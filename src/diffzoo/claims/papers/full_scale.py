"""Claims that need the papers' own compute (CIFAR-10, ImageNet): listed with the command that
would check them; the report prints each recipe's training cost from its config
(:func:`diffzoo.reproduce.training_cost`)."""

from __future__ import annotations

from ..registry import full_scale

EVAL = "then diffzoo-eval ckpt_path=<run>/checkpoints/last.ckpt n=50000"

full_scale("DDPM", "CIFAR-10 FID 3.17, IS 9.46 (unconditional, 1000 ancestral steps)", "Table 1", "ddpm_cifar10",
           f"make reproduce-ddpm-cifar; {EVAL} metrics=[fid,is]")
full_scale("DDIM", "CIFAR-10 FID 13.36 / 6.84 / 4.67 / 4.16 at S = 10 / 20 / 50 / 100, η = 0", "Table 1", "ddpm_cifar10",
           "make reproduce-ddpm-cifar; then python -m diffzoo.ddim_table ckpt_path=<run>/checkpoints/last.ckpt n=50000 skip=quad")
full_scale("iDDPM", "CIFAR-10 NLL 2.94 bits/dim (L_vlb), FID 2.90 (L_hybrid)", "Table 2", "iddpm_cifar10",
           f"python -m diffzoo.reproduce iddpm_cifar10; {EVAL} metrics=[nll_vlb,fid]")
full_scale("NCSN", "CIFAR-10 IS 8.87", "Table 1", "ncsn_cifar10", f"python -m diffzoo.reproduce ncsn_cifar10; {EVAL} metrics=[is]")
full_scale("NCSNv2", "CIFAR-10 FID 10.87 (with the final denoising step)", "Table 1", "ncsnv2_cifar10",
           f"python -m diffzoo.reproduce ncsnv2_cifar10; {EVAL} metrics=[fid]")
full_scale("ADM", "ImageNet 64×64 FID 2.07 (class-conditional)", "Table 5", "adm_imagenet64",
           f"python -m diffzoo.reproduce adm_imagenet64; {EVAL} metrics=[fid]")
full_scale("ADM", "ImageNet 128×128 FID 2.97 with classifier guidance (s = 0.5)", "Table 5", "adm_imagenet128",
           "python -m diffzoo.reproduce adm_imagenet128 and adm_classifier_imagenet128; then python -m diffzoo.guidance_sweep "
           "ckpt_path=<run>/checkpoints/last.ckpt guidance=classifier guidance.classifier_ckpt=<classifier> guidance.scale=0.5 n=50000")
full_scale("CFG", "the FID–IS trade-off of classifier-free guidance at full scale (the paper: ImageNet 64×64, best FID 1.55)",
           "Table 1, Fig. 4", "cfg_cifar10",
           "python -m diffzoo.reproduce cfg_cifar10; then python -m diffzoo.guidance_sweep ckpt_path=<run>/checkpoints/last.ckpt "
           "guidance=cfg n=50000 --multirun guidance.scale=0,0.1,0.3,1,4 (CIFAR-10: the paper has no CIFAR-10 number)")
full_scale("Score SDE", "CIFAR-10 FID 2.20, IS 9.89 (NCSN++ cont., deep, VE)", "Table 3", "sde_ve_cifar10_ncsnpp",
           f"python -m diffzoo.reproduce sde_ve_cifar10_ncsnpp; {EVAL} metrics=[fid,is]")
full_scale("Score SDE", "CIFAR-10 NLL 2.99 bits/dim (DDPM++ cont., deep, VP)", "Table 2", "sde_vp_cifar10_ddpmpp",
           f"python -m diffzoo.reproduce sde_vp_cifar10_ddpmpp; {EVAL} metrics=[nll_ode] nll.n=10000")
