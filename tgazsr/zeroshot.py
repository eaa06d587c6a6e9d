"""Zero-shot clean and PGD-robust accuracy of a ZeroShotCLIP on one dataset.

The small shared core: the end-of-training check uses it directly, and the benchmark harness
(``tgazsr.evaluate``) builds its datasets, attacks and reports around the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .attacks import pgd
from .data import collate
from .modeling import ZeroShotCLIP


@dataclass
class PGDSettings:
    eps: float = 1.0  # in units of 1/255
    steps: int = 100
    step_size: float = 1.0  # in units of 1/255
    norm: str = "linf"
    restarts: int = 1
    random_start: bool = True


def pgd_ce_attack(model: ZeroShotCLIP, text_embeds: torch.Tensor, x, labels, settings: PGDSettings, generator=None):
    """PGD on the zero-shot cross-entropy (the TGA table's attack)."""

    def loss_fn(xa):
        return F.cross_entropy(model.classify(xa, text_embeds).float(), labels, reduction="none")

    scale = 1 / 255 if settings.norm == "linf" else 1.0
    return pgd(
        loss_fn,
        x,
        eps=settings.eps * scale,
        step_size=settings.step_size * scale,
        steps=settings.steps,
        norm=settings.norm,
        random_start=settings.random_start,
        restarts=settings.restarts,
        generator=generator,
    )


def zero_shot_accuracy(
    model: ZeroShotCLIP,
    dataset,
    text_embeds: torch.Tensor,
    batch_size: int = 64,
    attack: PGDSettings | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    desc: str = "zero-shot",
    num_workers: int = 0,
) -> dict[str, float]:
    """Clean top-1 (and robust top-1 under ``attack``) as fractions, over the whole dataset."""
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    text_embeds = text_embeds.to(device)
    n = clean = robust = 0
    try:
        for batch in tqdm(loader, desc=desc, leave=False):
            x, y = batch["pixel_values"].to(device), batch["labels"].to(device)
            with torch.no_grad():
                clean += (model.classify(x, text_embeds).argmax(-1) == y).sum().item()
            if attack is not None:
                x_adv = pgd_ce_attack(model, text_embeds, x, y, attack, generator)
                with torch.no_grad():
                    robust += (model.classify(x_adv, text_embeds).argmax(-1) == y).sum().item()
            n += len(y)
    finally:
        model.train(was_training)
    result = {"num_samples": n, "clean_accuracy": clean / max(n, 1)}
    if attack is not None:
        result["robust_accuracy"] = robust / max(n, 1)
    return result
