"""AutoAttack through the ``pyautoattack`` package (the original attack code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..limits import Limits, declare_limits
from torch import nn

from .base import NORMS, AttackContext, AttackSpec, register_attack

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


#: Attack lists of the named AutoAttack variants.
AUTOATTACK_VERSIONS: dict[str, tuple[str, ...]] = {
    "tga": ("apgd-ce", "apgd-dlr"),  # TGA-ZSR's evaluation code
    "fare": ("apgd-ce", "apgd-t"),  # FARE / CLIP_benchmark's robust evaluation
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),  # AutoAttack's standard version
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    # AutoAttack's version for randomized defenses: APGD-CE and APGD-DLR with EOT (AutoAttack's own
    # 20 draws per gradient; here the run's eot_draws)
    "rand": ("apgd-ce", "apgd-dlr"),
}
AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")

def autoattack_plan(
    num_classes: int, version: str = "tga", attacks: Sequence[str] | None = None, n_target_classes: int = 9
) -> tuple[list[str], int]:
    """The attacks that can run on ``num_classes`` classes, and the number of target classes.

    The DLR loss needs the third-largest logit (3 classes at least) and its targeted form the
    fourth (4 classes at least), so on a 2-class dataset the 'tga' variant is APGD-CE alone, as
    in the reference code. Targeted attacks use at most C-1 target classes (pyautoattack crashes
    with more). ``version="custom"`` takes ``attacks``.
    """
    if version == "custom":
        if not attacks:
            raise ValueError("AutoAttack version 'custom' needs a list of attacks.")
        wanted = list(attacks)
    elif version in AUTOATTACK_VERSIONS:
        wanted = list(AUTOATTACK_VERSIONS[version])
    else:
        raise ValueError(f"Unknown AutoAttack version {version!r}; choose one of {[*AUTOATTACK_VERSIONS, 'custom']}.")
    unknown = [a for a in wanted if a not in AUTOATTACK_ATTACKS]
    if unknown:
        raise ValueError(f"Unknown AutoAttack attacks {unknown}; choose among {AUTOATTACK_ATTACKS}.")
    if num_classes < 2:
        raise ValueError(f"AutoAttack needs at least 2 classes, got {num_classes}.")
    runnable = [
        a for a in wanted
        if not (a == "apgd-dlr" and num_classes < 3) and not (a == "apgd-t" and num_classes < 4)
    ]
    if not runnable:
        runnable = ["apgd-ce"]
    return runnable, max(1, min(n_target_classes, num_classes - 1))


class _LogitsModule(nn.Module):
    """What pyautoattack expects: a module from images to float logits."""

    def __init__(self, logits_fn: LogitsFn):
        super().__init__()
        self.logits_fn = logits_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_fn(x).float()


def autoattack(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    norm: str = "linf",
    version: str = "tga",
    attacks: Sequence[str] | None = None,
    n_iter: int = 100,
    restarts: int = 1,
    n_target_classes: int = 9,
    square_queries: int = 5000,
    seed: int = 0,
    num_classes: int | None = None,
    eot_iter: int = 1,
) -> torch.Tensor:
    """AutoAttack from ``pyautoattack`` on a logits function of [0,1] images; returns adversarial images.

    Parameters follow AutoAttack's standard version (APGD 100 iterations, 1 restart; 9 target
    classes for APGD-T and FAB-T; Square 5000 queries), whichever attack list is chosen; the
    number of target classes is lowered to C-1 on small label sets, and DLR attacks are dropped
    where the loss is undefined (see ``autoattack_plan``). Samples that are misclassified clean
    are not attacked (returned unchanged), as AutoAttack does. ``eot_iter``: APGD's gradients per
    iteration (expectation over a randomized model's draws); FAB and Square take one.
    """
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    if norm not in NORMS:
        raise ValueError(f"Unknown attack norm {norm!r}; choose one of {NORMS}.")
    x = x.detach()
    if eps <= 0:
        return x.clone()
    model = _LogitsModule(logits_fn)
    if num_classes is None:
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
    plan, n_targets = autoattack_plan(num_classes, version, attacks, n_target_classes)
    aa_norm = {"linf": "Linf", "l2": "L2"}[norm]
    adversary = AutoAttack(model, attacks=plan, device=x.device, eps=eps, norm=aa_norm, seed=seed, version="custom")
    common = dict(norm=aa_norm, eps=eps, seed=seed, device=x.device, rho=0.75, verbose=False)
    adversary.apgd = APGDAttack(model, n_iter=n_iter, n_restarts=restarts, logger=adversary.logger,
                                eot_iter=eot_iter, **common)
    adversary.apgd_targeted = APGDAttack_targeted(
        model, n_iter=n_iter, n_restarts=1, n_target_classes=n_targets, logger=adversary.logger, eot_iter=eot_iter,
        **common
    )
    if eot_iter > 1:
        adversary.version = "rand"  # a randomized model, attacked with EOT: AutoAttack skips its determinism check
    adversary.fab.n_iter = n_iter
    adversary.fab.n_restarts = restarts
    adversary.fab.n_target_classes = n_targets
    adversary.square.n_queries = square_queries
    adversary.verbose = False
    x_adv, _ = adversary.run_standard_evaluation(x, labels.to(x.device), batch_size=len(x))
    return x_adv.detach()


@dataclass
class AutoAttackSettings:
    """AutoAttack's knobs. ``version``: 'tga' (APGD-CE + APGD-DLR, the TGA-ZSR code), 'fare'
    (APGD-CE + APGD-T), 'standard' (APGD-CE, APGD-T, FAB-T, Square), 'plus', 'rand' (APGD-CE +
    APGD-DLR, AutoAttack's version for randomized defenses, with the run's EOT draws), or 'custom'
    (``attacks``). Target classes are lowered to C-1 on small label sets."""

    version: str = "tga"
    attacks: list[str] | None = None
    n_iter: int = 100
    restarts: int = 1
    n_target_classes: int = 9
    square_queries: int = 5000

    def __post_init__(self):
        autoattack_plan(10, self.version, self.attacks)  # validates the names


def _run_autoattack(model, x, labels, eps, settings: AutoAttackSettings, context: AttackContext) -> torch.Tensor:
    text = context.text_embeds
    return autoattack(
        lambda xa: model.classify(xa, text), x, labels, eps, norm=context.norm, version=settings.version,
        attacks=settings.attacks, n_iter=settings.n_iter, restarts=settings.restarts,
        n_target_classes=settings.n_target_classes, square_queries=settings.square_queries, seed=context.seed,
        num_classes=context.num_classes or None, eot_iter=context.eot_draws,
    )


register_attack(AttackSpec("autoattack", AutoAttackSettings, _run_autoattack, batch_invariant=False,
                           description="AutoAttack (pyautoattack): APGD-CE/DLR/T, FAB, Square"))


declare_limits(AutoAttackSettings, version=Limits(choices=AUTOATTACK_VERSIONS), n_iter=Limits(ge=0), restarts=Limits(ge=1), n_target_classes=Limits(ge=1), square_queries=Limits(ge=1))
