"""Zero-shot classification accuracy of a CLIP on held-out images (Radford et al. 2021, §3.1.2).

Each class (and each other attribute of a caption data set: ``bold``, …) is represented by the mean
of its prompts' unit text embeddings (prompt ensembling, §3.1.4); an image is assigned the class
with the largest cosine similarity. Prompts come from the data set's caption grammar: its training
phrasings (``register="train"``) or its held-out paraphrases (``"heldout"``, words the text tower
never saw), every (class, attribute) pair ``prompts_per_pair`` times.
"""

from __future__ import annotations

import torch

__all__ = ["zero_shot_accuracy"]


@torch.no_grad()
def zero_shot_accuracy(clip, datamodule, register: str = "train", prompts_per_pair: int = 10, seed: int = 0,
                       batch_size: int = 512) -> dict[str, float]:
    """Accuracy per attribute (``{"class": …, "bold": …}``) of ``clip``'s zero-shot classification of
    ``datamodule``'s held-out images (``eval_set("train")``: the validation split), prompts of register
    ``register``. ``clip`` has ``encode_image`` / ``encode_text`` / ``zero_shot_logits``
    (:mod:`diffzoo.networks.clip`)."""
    held = datamodule.eval_set("train")
    images = held.images()
    n_prompts = 2 * datamodule.num_classes * int(prompts_per_pair)
    prompts = datamodule.prompts(register, n_prompts, seed=seed)
    device = next(iter(clip.parameters())).device
    out = {}
    for name, labels in prompts.attributes.items():
        k = int(labels.max()) + 1
        pred = torch.cat([clip.zero_shot_logits(images[i: i + batch_size].to(device), prompts.text, labels, k).argmax(-1).cpu()
                          for i in range(0, len(images), batch_size)])
        out[name] = float((pred == held.attributes[name]).double().mean())
    return out
