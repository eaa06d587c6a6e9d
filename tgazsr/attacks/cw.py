"""The CW attack of the TGA-ZSR evaluation: PGD sign steps on the capped margin loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..limits import Limits, declare_limits

from ..objectives import AttackTarget, objective_loss
from .base import AttackContext, AttackSpec, register_attack
from .pgd import pgd


@dataclass
class CWSettings:
    """CW-style L-inf attack: maximize ``min(max_{j!=y} z_j - z_y, kappa)`` with sign steps.
    A sample stops being pushed once the best wrong class leads by ``kappa`` (50 in the TGA code)."""

    steps: int = 100
    step_size: float = 1.0  # units of 1/255
    kappa: float = 50.0
    restarts: int = 1
    random_start: bool = True


def _run_cw(model, x, labels, eps, settings: CWSettings, context: AttackContext) -> torch.Tensor:
    target = AttackTarget(labels, context.text_embeds, kappa=settings.kappa)
    loss_fn = objective_loss("margin", model, target)
    return pgd(loss_fn, x, eps, settings.step_size * context.unit, settings.steps, "linf",
               settings.random_start, settings.restarts, context.generators, context.eot_draws)


register_attack(AttackSpec("cw", CWSettings, _run_cw, norms=("linf",), description="CW margin loss, sign steps"))


declare_limits(CWSettings, steps=Limits(ge=0), step_size=Limits(ge=0), kappa=Limits(gt=0), restarts=Limits(ge=1))
