"""One interface for every evaluation attack, a registry, and the budget check.

An attack is an :class:`AttackSpec`: a settings dataclass (its own knobs, with defaults and help)
and one function ``run(model, x, labels, eps, settings, context) -> x_adv`` from ``[0,1]`` images
to adversarial ``[0,1]`` images. ``eps`` arrives in pixel units (1/255 is one grey level for
L-inf; an absolute radius for L2). The harness checks every result against the threat model
(:func:`check_budget`), so an attack cannot cheat its way to a lower number.

Adding an attack is one module that calls :func:`register_attack`; the evaluation arguments
(``--<name>_<field>`` flags), the cache key and the reports derive from the registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..limits import problems as limit_problems
from ..registry import Registry

NORMS = ("linf", "l2")


@dataclass
class AttackContext:
    """What an attack may read besides the images and labels.

    text_embeds: (C, D) normalized class embeddings of the zero-shot classifier under attack.
    norm: the threat model, 'linf' or 'l2'. generators: one CPU generator per sample (random
    starts that do not depend on batching), or None. seed: for attacks that seed themselves.
    num_classes: C. unit: the pixel value of one unit of the attack's step sizes (1/255 for
    L-inf, 1 for L2). eot_draws: gradients averaged per step (expectation over transformation)
    when the model under attack draws randomness on each call (a randomized test-time defense).
    """

    text_embeds: torch.Tensor
    norm: str = "linf"
    generators: Sequence[torch.Generator] | None = None
    seed: int = 0
    num_classes: int = 0
    eot_draws: int = 1

    @property
    def unit(self) -> float:
        return in_pixels(1.0, self.norm)


def in_pixels(budget: float, norm: str = "linf") -> float:
    """A budget (an eps or a step size) as the command line gives it, in the pixel scale of [0, 1]
    images: L-inf budgets are in units of 1/255, L2 budgets are already in pixels. The one place
    the conversion happens (training's attack, the evaluation's, the attention figure)."""
    return budget / 255 if norm == "linf" else budget


AttackFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, float, Any, AttackContext], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack.

    batch_invariant: its numbers do not depend on how samples are batched (per-sample random
    starts). AutoAttack seeds the global generator per call, so its numbers depend on the
    batches, and the batch size becomes part of its cache key.
    """

    name: str
    settings: type
    run: AttackFn
    norms: tuple[str, ...] = NORMS
    batch_invariant: bool = True
    description: str = ""


def _check_attack(name: str, spec: AttackSpec) -> None:
    if not dataclasses.is_dataclass(spec.settings):
        raise TypeError(f"Attack {name!r}: settings must be a dataclass.")
    if "_" in name:
        raise ValueError(f"Attack names may not contain '_' (flags are --<name>_<field>): {name!r}.")


ATTACKS: Registry[AttackSpec] = Registry("attack", flag="--attacks", check=_check_attack)


def register_attack(spec: AttackSpec) -> AttackSpec:
    return ATTACKS.register(spec.name, spec)


def unregister_attack(name: str) -> None:
    ATTACKS.unregister(name)


def get_attack(name: str) -> AttackSpec:
    return ATTACKS.get(name)


def make_settings(name: str, options: dict | None = None):
    """The attack's settings dataclass, its defaults overridden by ``options``."""
    spec = get_attack(name)
    options = dict(options or {})
    valid = [f.name for f in dataclasses.fields(spec.settings)]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise ValueError(f"Attack {name!r} has no settings {unknown}; its settings are {valid}.")
    settings = spec.settings(**options)
    bad = limit_problems(settings)
    if bad:
        raise ValueError(f"Attack {name!r}: " + " ".join(bad))
    return settings


def settings_dict(settings) -> dict:
    return dataclasses.asdict(settings)


def check_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str, attack: str) -> None:
    """Refuse adversarial images outside the threat model: wrong shape, non-finite, outside
    the pixel box [0, 1], or farther than ``eps`` (pixel units) from ``x``."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"The {attack} attack returned images of another shape or non-finite values.")
    if x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise RuntimeError(f"The {attack} attack left the pixel box [0, 1].")
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    if (size > eps * (1 + 1e-4) + 1e-6).any():
        raise RuntimeError(f"The {attack} attack exceeded its budget: {size.max().item():.6g} > {eps:.6g} ({norm}).")


def run_attack(name: str, model, x: torch.Tensor, labels: torch.Tensor, eps: float, settings,
               context: AttackContext) -> torch.Tensor:
    """Run a registered attack at ``eps`` (pixel units) and check what it returns."""
    spec = get_attack(name)
    if context.norm not in spec.norms:
        raise ValueError(f"The {name} attack supports norms {spec.norms}, not {context.norm!r}.")
    x = x.detach()
    if eps <= 0:
        return x.clone()
    x_adv = spec.run(model, x, labels, eps, settings, context)
    check_budget(x, x_adv, eps, context.norm, name)
    return x_adv.detach()
