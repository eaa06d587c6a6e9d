"""``none``: the model itself, undefended (the identity defense)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import DefendedClassifier, DefenseSpec, register_defense


@dataclass
class NoDefenseSettings:
    """The undefended model has no settings."""


class NoDefense(DefendedClassifier):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.undefended(x)


register_defense(DefenseSpec("none", NoDefenseSettings, NoDefense, description="no test-time defense"))
