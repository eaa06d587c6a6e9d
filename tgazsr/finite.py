"""The one scan for non-finite weights: what the trainer refuses to save and the harness refuses to score."""

from __future__ import annotations

from typing import Mapping

import torch


def non_finite_tensors(weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity, in order: of a module's
    state dict, or of a state dict."""
    tensors = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    return [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
