"""Projected gradient attacks in pixel space.

An attack takes a function from images to per-sample losses and a budget, and returns
adversarial images. It knows nothing of models: the caller closes over whatever it attacks.
Gradients are taken with respect to the perturbation only (``torch.autograd.grad``), so no
parameter gradient is computed or accumulated and no DDP hook fires.
"""

from __future__ import annotations

from typing import Callable

import torch

LossFn = Callable[[torch.Tensor], torch.Tensor]
NORMS = ("linf", "l2")


def _l2_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    if norm == "linf":
        delta = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        return delta * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    radius = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device, dtype=x.dtype)
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
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Maximize ``loss_fn(x + delta)`` over ``||delta|| <= eps`` with ``x + delta`` in [0, 1].

    ``loss_fn`` returns one loss per sample (B,). Budgets are in pixel units (1/255 is one grey
    level). With several restarts, each sample keeps the perturbation of highest final loss.
    L-inf steps follow the gradient's sign, L2 steps its normalized direction.
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
                loss = loss_fn(x + delta)
                (grad,) = torch.autograd.grad(loss.sum(), delta)
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
