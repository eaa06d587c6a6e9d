"""Projected gradient descent in pixel space, and the registered ``pgd`` attack.

``pgd`` takes a function from images to per-sample losses and a budget, and returns
adversarial images; it knows nothing of models (the training attack and every evaluation
attack close over an objective of ``tgazsr.objectives``).
Gradients are taken with respect to the perturbation only (``torch.autograd.grad``), so no
parameter gradient is computed or accumulated and no DDP hook fires.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..limits import Limits, declare_limits
from ..objectives import OBJECTIVES

from ..objectives import AttackTarget, objective_loss
from .base import NORMS, AttackContext, AttackSpec, register_attack

LossFn = Callable[[torch.Tensor], torch.Tensor]


def _l2_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def sample_generators(seed: int, indices: Sequence[int], salt: str = "") -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``(seed, salt, index)``.

    Random starts drawn from these depend only on the sample's index in its dataset, not on the
    batch it lands in, the batch size, the number of processes or the device: an evaluation
    gives the same numbers however it is split up.
    """
    gens = []
    for i in indices:
        digest = hashlib.blake2b(f"{seed}|{salt}|{int(i)}".encode(), digest_size=8).digest()
        gens.append(torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1)))
    return gens


def _draw(kind: str, shape, x: torch.Tensor, generator) -> torch.Tensor:
    """Uniform [0,1) or standard normal noise of ``shape`` (B first), from one generator or one per sample."""
    fn = torch.rand if kind == "rand" else torch.randn
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"Got {len(generator)} per-sample generators for a batch of {shape[0]}.")
        noise = torch.stack([fn(tuple(shape[1:]), generator=g, dtype=torch.float32) for g in generator])
        return noise.to(device=x.device, dtype=x.dtype)
    return fn(tuple(shape), generator=generator, device=x.device, dtype=x.dtype)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator) -> torch.Tensor:
    if norm == "linf":
        return (_draw("rand", x.shape, x, generator) * 2 - 1) * eps
    direction = _draw("randn", x.shape, x, generator)
    radius = _draw("rand", (x.shape[0],) + (1,) * (x.dim() - 1), x, generator)
    return direction / (_l2_norm(direction) + 1e-12) * radius * eps


def _project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Into the eps-ball, then into the box [0, 1] for x + delta."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * torch.clamp(eps / (_l2_norm(delta) + 1e-12), max=1.0)
    return (x + delta).clamp(0.0, 1.0) - x


def pgd(
    loss_fn: LossFn,
    x: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    eot: int = 1,
) -> torch.Tensor:
    """Maximize ``loss_fn(x + delta)`` over ``||delta|| <= eps`` with ``x + delta`` in [0, 1].

    ``loss_fn`` returns one loss per sample (B,). Budgets are in pixel units (1/255 is one grey
    level). With several restarts, each sample keeps the perturbation of highest final loss.
    L-inf steps follow the gradient's sign, L2 steps its normalized direction. ``generator`` is
    one generator for the batch, or a list of one per sample (see ``sample_generators``).
    ``eot``: gradients per step, summed (expectation over transformation, for a ``loss_fn`` that
    draws its own randomness on every call: a randomized defense); 1 for a deterministic one.
    """
    if norm not in NORMS:
        raise ValueError(f"Unknown attack norm {norm!r}; choose one of {NORMS}.")
    x = x.detach()
    if eps <= 0 or steps <= 0:
        return x.clone()
    best_x, best_loss = x.clone(), None
    for _ in range(max(1, restarts)):
        delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
        delta = _project(delta, x, eps, norm)
        for _ in range(steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                grad = None
                for _ in range(max(1, eot)):
                    loss = loss_fn(x + delta)
                    (g,) = torch.autograd.grad(loss.sum(), delta)
                    grad = g if grad is None else grad + g
            with torch.no_grad():
                if norm == "linf":
                    step = step_size * grad.sign()
                else:
                    step = step_size * grad / (_l2_norm(grad) + 1e-12)
                delta = _project(delta.detach() + step, x, eps, norm)
        x_adv = (x + delta).detach()
        if restarts <= 1:
            return x_adv
        with torch.no_grad():
            final = loss_fn(x_adv).float()
        if best_loss is None:
            best_x, best_loss = x_adv, final
        else:
            better = final > best_loss
            best_x[better] = x_adv[better]
            best_loss = torch.where(better, final, best_loss)
    return best_x




@dataclass
class PGDSettings:
    """PGD of the TGA table: 100 sign steps of 1/255, a uniform random start, cross-entropy."""

    steps: int = 100
    step_size: float = 1.0  # units of 1/255 for L-inf, absolute for L2
    restarts: int = 1  # a sample falls if any restart fools it (the highest-loss restart is kept)
    random_start: bool = True
    objective: str = "ce"  # see tgazsr.objectives


def _run_pgd(model, x, labels, eps, settings: PGDSettings, context: AttackContext) -> torch.Tensor:
    loss_fn = objective_loss(settings.objective, model, AttackTarget(labels, context.text_embeds))
    return pgd(loss_fn, x, eps, settings.step_size * context.unit, settings.steps, context.norm,
               settings.random_start, settings.restarts, context.generators, context.eot_draws)


register_attack(AttackSpec("pgd", PGDSettings, _run_pgd, description="PGD (L-inf sign steps or L2 steps)"))


declare_limits(PGDSettings, steps=Limits(ge=0), step_size=Limits(ge=0), restarts=Limits(ge=1), objective=Limits(choices=OBJECTIVES))
