"""``random_noise``: TTC's random-noise baseline, the random start alone (K = 0): X + d0 with
d0 ~ U[-eps, eps] per pixel, clamped so that X + d0 stays in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attacks.base import in_pixels
from ..limits import setting
from .base import DefendedClassifier, DefenseSpec, register_defense
from .ttc import TTC_PAPER, TTCSettings, counterattack


@dataclass
class RandomNoiseSettings:
    """The noise's budget, units of 1/255 (TTC's eps, 4)."""

    eps: float = setting(4.0, "random_noise: noise budget, units of 1/255 (TTC's eps: 4).", ge=0)


class RandomNoiseDefense(DefendedClassifier):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.settings.eps
        noise = self.uniform(x, in_pixels(eps)) if eps > 0 else torch.zeros_like(x)
        delta = counterattack(None, x, noise, TTCSettings(eps=eps, steps=0), gradient=self.context.gradient)
        return self.undefended(x + delta)


register_defense(DefenseSpec(
    "random_noise", RandomNoiseSettings, RandomNoiseDefense, random=True, gradients=("bpda", "exact"),
    description="uniform noise in [-eps, eps] (TTC's random-noise baseline)", paper=TTC_PAPER,
))
