"""One interface for every test-time defense, and its registry.

A defense is a :class:`DefenseSpec`: a settings dataclass (its own knobs, each with a default, a
help text and declared limits) and a :class:`DefendedClassifier` subclass. The classifier wraps
the model under attack (a ``ZeroShotCLIP``) and its class text embeddings, and maps ``[0,1]``
images (B, 3, H, W) to logits. A defense that draws randomness draws it from a
:class:`DefenseContext`'s generators, one per sample, seeded like the attacks' random starts
(``tgazsr.attacks.sample_generators``), so its numbers do not depend on the batch a sample lands
in.

How gradients pass through the defense (``DefenseContext.gradient``, the evaluation's
``--adaptive_gradient``) is the classifier's business:

- ``bpda``: every step that is not differentiable, or that the defense computes from detached
  copies, is passed straight through on the backward pass (Athalye et al. 2018's BPDA with the
  identity): the gradient is the model's at the defended input, the defense's change held fixed;
- ``exact``: plain autograd through the defense as it computes (zero where a step is piecewise
  constant: what an attacker who ignores the defense's structure sees);
- ``smooth``: the forward values are the defense's, the backward pass differentiates smooth
  surrogates of its steps (a defense that has none to smooth does not list it).

A defense whose mechanism an attack should aim at (Tramer et al. 2020: a loss designed for the
defense) gives its classifier an ``adaptive_term(x)``: a per-sample term that the adaptive attack's
``ce`` and ``margin`` objectives add, weighted by ``--adaptive_term_weight`` (``DefenseContext.term_weight``).

Adding a defense is one module that calls :func:`register_defense`; the evaluation flags
(``--<defense>_<field>``), the cache key and the reports derive from the registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..attacks.pgd import _draw
from ..errors import UserError
from ..limits import problems as limit_problems
from ..objectives import LogitsClassifier
from ..registry import Registry

GRADIENTS = ("bpda", "exact", "smooth")
THREAT_MODELS = ("non_adaptive", "adaptive")


class DefenseSettingsError(ValueError, UserError):
    """Settings of a defense that it does not have, or outside their declared limits."""


@dataclass
class DefenseContext:
    """What a defended classifier reads besides the model and the class embeddings.

    generators: one CPU generator per sample of the batch it classifies (``sample_generators``),
    or one generator for the whole batch (attacks that call the model on parts of their batch,
    such as AutoAttack), or None for a defense that draws nothing. gradient: one of
    :data:`GRADIENTS`. temperature: the smoothness of the ``smooth`` surrogates. resources: what
    the defense's ``prepare`` loaded once per run (TTC's reference encoder for tau). term_weight:
    the weight of the classifier's ``adaptive_term`` in an adaptive attack's objective (0: none).
    """

    generators: Sequence[torch.Generator] | torch.Generator | None = None
    gradient: str = "bpda"
    temperature: float = 0.1
    resources: Any = None
    term_weight: float = 0.0


class DefendedClassifier(LogitsClassifier):
    """``model`` behind a test-time defense: ``forward(x)`` gives logits (B, C) of ``[0,1]`` images
    against ``text_embeds``. Subclasses implement :meth:`forward`."""

    def __init__(self, model, text_embeds: torch.Tensor, settings, context: DefenseContext):
        super().__init__()
        self.model = model
        self.text_embeds = text_embeds
        self.settings = settings
        self.context = context

    def undefended(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the model itself."""
        return self.model.classify(x, self.text_embeds)

    def uniform(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """Noise of ``x``'s shape, uniform in [-eps, eps], from the context's generators."""
        if self.context.generators is None:
            raise RuntimeError(f"The {type(self).__name__} defense draws randomness: build it with generators.")
        return (_draw("rand", x.shape, x, self.context.generators) * 2 - 1) * eps


@dataclass(frozen=True)
class DefenseSpec:
    """A registered defense.

    random: it draws randomness on every call (the adaptive attack then averages its gradients
    over ``eot_draws`` draws, and each prediction is scored over ``defense_score_draws``).
    gradients: the values of ``--adaptive_gradient`` it implements. prepare: called once per run
    with ``(model, settings, args)``; what it returns reaches the classifier as
    ``context.resources``. identity: a function of the resources recorded in the results and the
    cache key (the fingerprint of a model the defense loads). paper: its citation (a URL).
    adaptive_term: what the classifier's ``adaptive_term`` makes the adaptive attack do, in words
    (empty: it has none), for the results and the card.
    """

    name: str
    settings: type
    classifier: type
    random: bool = False
    gradients: tuple[str, ...] = GRADIENTS
    prepare: Callable[[Any, Any, Any], Any] | None = None
    identity: Callable[[Any], dict] | None = None
    description: str = ""
    paper: str = ""
    adaptive_term: str = ""


def _check_defense(name: str, spec: DefenseSpec) -> None:
    if not dataclasses.is_dataclass(spec.settings):
        raise TypeError(f"Defense {name!r}: settings must be a dataclass.")
    if not issubclass(spec.classifier, DefendedClassifier):
        raise TypeError(f"Defense {name!r}: classifier must subclass DefendedClassifier.")
    bad = [g for g in spec.gradients if g not in GRADIENTS]
    if bad or "bpda" not in spec.gradients:
        raise ValueError(f"Defense {name!r}: gradients must include 'bpda' and be among {GRADIENTS}, got {bad}.")


DEFENSES: Registry[DefenseSpec] = Registry("defense", flag="--defense", check=_check_defense)


def register_defense(spec: DefenseSpec) -> DefenseSpec:
    return DEFENSES.register(spec.name, spec)


def unregister_defense(name: str) -> None:
    DEFENSES.unregister(name)


def get_defense(name: str) -> DefenseSpec:
    return DEFENSES.get(name)


def make_defense_settings(name: str, options: dict | None = None):
    """The defense's settings dataclass, its defaults overridden by ``options``, checked against
    the declared limits."""
    spec = get_defense(name)
    options = dict(options or {})
    valid = [f.name for f in dataclasses.fields(spec.settings)]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise DefenseSettingsError(f"The {name} defense has no settings {unknown}; its settings are "
                                   f"{valid or 'none'}.")
    settings = spec.settings(**options)
    bad = limit_problems(settings)
    if bad:
        raise DefenseSettingsError(f"Defense {name!r}: " + " ".join(bad))
    return settings


def build_defended(name: str, model, text_embeds: torch.Tensor, settings, context: DefenseContext) -> DefendedClassifier:
    """The defended classifier of defense ``name`` around ``model``."""
    spec = get_defense(name)
    if context.gradient not in spec.gradients:
        raise DefenseSettingsError(f"The {name} defense has no {context.gradient!r} gradient; choose "
                                   f"--adaptive_gradient among {', '.join(spec.gradients)}.")
    return spec.classifier(model, text_embeds, settings, context)
