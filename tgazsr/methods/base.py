"""What a training method is, and the registry of methods.

Every method shares one training step (``RobustCLIPTrainer.compute_loss``):
1. attack the clean batch (if the method is adversarial) with the method's objective;
2. one forward of the trained model on ``[x_adv; x]`` (or whichever halves the method uses);
3. one no-grad forward of the frozen reference where the method needs it;
4. the method's loss terms from a :class:`StepView` of those outputs.

A :class:`Method` holds everything specific to one method: its name and titles, its paper and
citation, its own settings (``config``: a dataclass of fields with help text, defaults, declared
limits and its own checks), its attack objective, which halves and reference inputs it needs, the
extra prompts it embeds, its attention kind, its logit-scale policy and its loss. The recipe
parser, ``--help``, validation, the model card, the mini table and the tests all read the
registry (:mod:`tgazsr.methods.fields`), so a new method is one module that calls
:func:`register_method` (plus a recipe).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..modeling import ImageEncoding
from ..papers import Paper  # noqa: F401  (also imported from here)
from ..registry import Registry


@dataclass
class StepView:
    """Everything a method's loss may read for one batch. Encodings are None when unused."""

    labels: torch.Tensor
    text_embeds: torch.Tensor  # (C, D) normalized class embeddings
    logits_fn: Callable[..., torch.Tensor]  # (image_embeds, scale=True) -> zero-shot logits
    logit_scale: torch.Tensor
    image_size: int
    adv: ImageEncoding | None  # trained model on x_adv
    clean: ImageEncoding | None  # trained model on x
    ref_adv: ImageEncoding | None  # frozen model on x_adv
    ref_clean: ImageEncoding | None  # frozen model on x
    scale: bool = True  # the method's logit-scale policy for this run (Method.uses_logit_scale)
    #: The class embeddings of each extra prompt the method declares (``Method.prompts``), by the name
    #: of the config field holding its template: (C, D) each.
    prompt_embeds: Mapping[str, torch.Tensor] = field(default_factory=dict)
    #: The logit bias of the model (None: the family has none, as CLIP).
    logit_bias: torch.Tensor | None = None
    #: The model's backbone (``tgazsr.backbones``): its own contrastive loss, for FT-Clean and FT-Adv.
    backbone: type | None = None


@dataclass
class LossOutput:
    """``mean_part`` is a batch mean; ``sum_part`` a batch sum (PMG-AFT's KL), or None. The trainer
    scales each kind so gradient accumulation matches the equivalent larger batch. ``logs`` are
    the unweighted terms, by name; ``accuracy_logits`` give the logged training accuracy."""

    mean_part: torch.Tensor
    sum_part: torch.Tensor | None
    logs: dict[str, torch.Tensor]
    accuracy_logits: torch.Tensor


LossFn = Callable[[StepView, Any], LossOutput]


class MethodConfig:
    """Base of a method's settings dataclass: declared limits (``tgazsr.limits.setting``) are checked
    when it is built, then :meth:`problems` (override it for checks across its fields)."""

    def __post_init__(self):
        from ..limits import problems as limit_problems
        from ..recipes import raise_problems

        raise_problems(limit_problems(self) or self.problems())

    def problems(self) -> list[str]:
        """What is wrong with these settings beyond their declared limits (empty: nothing)."""
        return []
ATTENTION_KINDS = (None, "text", "complementary", "vision")
REFERENCE_INPUTS = (None, "clean", "adv")


@dataclass(frozen=True)
class Method:
    """One training method.

    name: the ``--method`` value (and the recipe's file name). title: as in the paper's table.
    description: one sentence for the model card. paper: where it comes from (None: ours).
    loss: ``(StepView, config) -> LossOutput``; ``config`` is the training config, whose method
    fields are read as attributes (``cfg.alpha``). config: the method's settings, a dataclass
    (subclass :class:`MethodConfig` for its limits and checks); its fields are recipe keys and
    flags of ``tgazsr train``, shown by ``--help`` and in the model card. adversarial: trains on
    attacked images. attack_objective: the training attack's default objective
    (``tgazsr.objectives``; one that ``reads_reference`` gets the frozen model). uses_clean: the
    clean batch goes through the trained model too. reference: which images the frozen model sees
    (None, 'clean' or 'adv'). prompts: fields of ``config`` holding prompt templates whose class
    embeddings the loss reads as ``view.prompt_embeds[field]``. attention: None, 'text',
    'complementary' or 'vision' (the last needs eager attention). logit_scale_field: a boolean
    field of ``config`` that decides whether its logits are scaled by the logit scale (None:
    always scaled). loss_terms: the names its loss logs. backbone_loss: its loss is the model
    family's own image-text loss (FT-Clean, FT-Adv).
    """

    name: str
    title: str
    description: str
    loss: LossFn
    adversarial: bool = True
    attack_objective: str | None = "ce"
    uses_clean: bool = False
    reference: str | None = None
    attention: str | None = None
    config: type | None = None
    prompts: tuple[str, ...] = ()
    logit_scale_field: str | None = None
    loss_terms: tuple[str, ...] = ()
    paper: Paper | None = None
    #: Its loss is the backbone's own image-text loss (``Backbone.contrastive_loss``: CLIP's softmax,
    #: SigLIP's sigmoid), so the model card says which one a run used.
    backbone_loss: bool = False

    def __post_init__(self):
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"Method {self.name!r}: attention must be one of {ATTENTION_KINDS}.")
        if self.reference not in REFERENCE_INPUTS:
            raise ValueError(f"Method {self.name!r}: reference must be one of {REFERENCE_INPUTS}.")
        if self.adversarial and not self.attack_objective:
            raise ValueError(f"Method {self.name!r} is adversarial but names no attack objective.")
        if not self.adversarial and not self.uses_clean:
            raise ValueError(f"Method {self.name!r} uses neither adversarial nor clean images.")
        if self.config is not None and not dataclasses.is_dataclass(self.config):
            raise ValueError(f"Method {self.name!r}: config must be a dataclass of its settings.")
        for name in self.prompts + ((self.logit_scale_field,) if self.logit_scale_field else ()):
            if name not in self.fields:
                raise ValueError(f"Method {self.name!r} names {name!r}, which is not a field of its config.")

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of its settings (the fields of ``config``)."""
        return tuple(f.name for f in dataclasses.fields(self.config)) if self.config is not None else ()

    def make_config(self, **values) -> Any:
        """Its settings: ``config``'s defaults updated by ``values`` (checked by the config itself)."""
        if self.config is None:
            if values:
                raise ValueError(f"Method {self.name!r} has no settings; got {', '.join(values)}.")
            return None
        return self.config(**values)

    @property
    def needs_tokens(self) -> bool:
        return self.attention in ("text", "complementary")

    @property
    def needs_attentions(self) -> bool:
        """Attention weights: the model must be loaded with eager attention."""
        return self.attention == "vision"

    @property
    def accuracy_name(self) -> str:
        return "adv_acc" if self.adversarial else "clean_acc"

    def uses_logit_scale(self, cfg) -> bool:
        return True if self.logit_scale_field is None else bool(getattr(cfg, self.logit_scale_field))

    def citation(self) -> str:
        return self.paper.bibtex if self.paper else ""


METHODS: Registry[Method] = Registry("method", flag="--method")


def register_method(method: Method) -> Method:
    return METHODS.register(method.name, method)


def unregister_method(name: str) -> None:
    METHODS.unregister(name)


def get_method(name: str) -> Method:
    """The registered method called ``name``; an unknown name is an error naming the closest ones."""
    return METHODS.get(name)
