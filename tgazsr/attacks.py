"""Projected gradient attacks in pixel space.

An attack takes a function from images to per-sample losses and a budget, and returns
adversarial images. It knows nothing of models: the caller closes over whatever it attacks.
Gradients are taken with respect to the perturbation only (``torch.autograd.grad``), so no
parameter gradient is computed or accumulated and no DDP hook fires.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Sequence

import torch
from torch import nn

from .losses import margin_loss

LossFn = Callable[[torch.Tensor], torch.Tensor]
NORMS = ("linf", "l2")


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
) -> torch.Tensor:
    """Maximize ``loss_fn(x + delta)`` over ``||delta|| <= eps`` with ``x + delta`` in [0, 1].

    ``loss_fn`` returns one loss per sample (B,). Budgets are in pixel units (1/255 is one grey
    level). With several restarts, each sample keeps the perturbation of highest final loss.
    L-inf steps follow the gradient's sign, L2 steps its normalized direction. ``generator`` is
    one generator for the batch, or a list of one per sample (see ``sample_generators``).
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


LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def cw(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    kappa: float = 50.0,
    random_start: bool = True,
    restarts: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """CW-style L-inf attack: PGD sign steps on the margin loss ``min(max_{j!=y} z_j - z_y, kappa)``.

    ``logits_fn`` maps [0,1] images to (B, C) logits. The margin is capped at ``kappa``
    (50, as in the TGA-ZSR evaluation), so a sample stops being pushed once the best wrong
    class leads by ``kappa``.
    """

    def loss_fn(xa: torch.Tensor) -> torch.Tensor:
        return margin_loss(logits_fn(xa), labels, kappa)

    return pgd(loss_fn, x, eps, step_size, steps, "linf", random_start, restarts, generator)


# --- AutoAttack (through the pyautoattack package) ---------------------------------------

#: Attack lists of the named AutoAttack variants.
AUTOATTACK_VERSIONS: dict[str, tuple[str, ...]] = {
    "tga": ("apgd-ce", "apgd-dlr"),  # TGA-ZSR's evaluation code
    "fare": ("apgd-ce", "apgd-t"),  # FARE / CLIP_benchmark's robust evaluation
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),  # AutoAttack's standard version
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
}
AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")

_aa_logger = logging.getLogger(__name__)


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
) -> torch.Tensor:
    """AutoAttack from ``pyautoattack`` on a logits function of [0,1] images; returns adversarial images.

    Parameters follow AutoAttack's standard version (APGD 100 iterations, 1 restart; 9 target
    classes for APGD-T and FAB-T; Square 5000 queries), whichever attack list is chosen; the
    number of target classes is lowered to C-1 on small label sets, and DLR attacks are dropped
    where the loss is undefined (see ``autoattack_plan``). Samples that are misclassified clean
    are not attacked (returned unchanged), as AutoAttack does.
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
    common = dict(norm=aa_norm, eps=eps, seed=seed, device=x.device, eot_iter=1, rho=0.75, verbose=False)
    adversary.apgd = APGDAttack(model, n_iter=n_iter, n_restarts=restarts, logger=adversary.logger, **common)
    adversary.apgd_targeted = APGDAttack_targeted(
        model, n_iter=n_iter, n_restarts=1, n_target_classes=n_targets, logger=adversary.logger, **common
    )
    adversary.fab.n_iter = n_iter
    adversary.fab.n_restarts = restarts
    adversary.fab.n_target_classes = n_targets
    adversary.square.n_queries = square_queries
    adversary.verbose = False
    x_adv, _ = adversary.run_standard_evaluation(x, labels.to(x.device), batch_size=len(x))
    return x_adv.detach()
