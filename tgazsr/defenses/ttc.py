"""TTC, test-time counterattacks (Xing, Zhao, Sebe, CVPR 2025, https://arxiv.org/abs/2503.03613),
as its released code computes it (METHOD.md, "TTC, as its released code computes it").

Each image X, clean or attacked, is replaced by X + Delta(X) before zero-shot classification:

1. a random start d0 ~ U[-eps, eps] per pixel, clamped so that X + d0 stays in [0, 1];
2. tau = ||g(X + d0) - g(X)|| / ||g(X)|| per image, with unnormalized embeddings; g is the victim
   itself, or the original CLIP when the victim is fine-tuned (``tau_reference``);
3. K steps of sign ascent on sum_b ||f(X_b + d_b) - f(X_b)||^2 (f the victim, unnormalized
   embeddings, the anchor f(X) under no_grad): d <- clip_[-eps,eps](d + a sign(grad)), then a clamp
   that keeps X + d in [0, 1]; d0, d1, ..., dK are kept;
4. tau < tau_thres: Delta = sum_k w_k d_k with w_k = exp(beta k) / sum_j exp(beta j); otherwise
   (a tie included) Delta = d0, the random noise alone (a hard switch);
5. the victim scores X + Delta (not clamped again: a convex combination of in-range steps).

Defaults are TTC.sh's: eps 4/255, step 1/255, K = 2, beta 2, tau_thres 0.2.

Gradients for an adaptive attack (``--adaptive_gradient``): ``bpda`` holds Delta fixed on the
backward pass (the released code builds Delta from detached copies: BPDA with the identity);
``exact`` differentiates the computation as it is (the sign steps and the switch have zero
gradient; only the [0, 1] clamps pass one); ``smooth`` keeps the forward values and differentiates
surrogates on the backward pass: sign(g) as tanh(g / (t max|g|)), the switch as
sigmoid((tau_thres - tau) / (t tau_thres)), through the K unrolled steps with second-order terms
through the model, the anchor f(X) and tau moving with X.

The adaptive attack also aims at the switch (``TTCDefense.adaptive_term``): a second adaptive
pass, on the samples the logits-only pass left standing, adds ``--adaptive_term_weight *
min(tau / tau_thres, 1.25)`` to its ce or margin objective, which pushes the attacked image's tau
over the threshold, where TTC applies its random noise alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass

import torch

from ..attacks.base import in_pixels
from ..attention import wide
from ..errors import UserError
from ..limits import setting
from .base import DefendedClassifier, DefenseSpec, register_defense

logger = logging.getLogger("tgazsr.defenses")

TTC_PAPER = "https://arxiv.org/abs/2503.03613"
TAU_REFERENCES = ("auto", "victim", "base")
#: The switch term stops pulling at tau = 1.25 tau_thres: clear of the threshold by a margin for the
#: scoring draw's own random start.
SWITCH_MARGIN = 1.25


class TauReferenceError(ValueError, UserError):
    """A base model for TTC's tau that is asked for and not known, or that cannot be loaded."""


@dataclass
class TTCSettings:
    """TTC's counterattack (TTC.sh's defaults); budgets in units of 1/255."""

    eps: float = setting(4.0, "TTC: counterattack budget, units of 1/255 (TTC.sh: 4).", ge=0)
    step_size: float = setting(1.0, "TTC: counterattack step a, units of 1/255 (TTC.sh: 1).", ge=0)
    steps: int = setting(2, "TTC: counterattack steps K (TTC.sh: 2; 0 is the random start alone).", ge=0)
    beta: float = setting(2.0, "TTC: weights exp(beta k) of the steps d_k (TTC.sh: 2).", ge=0)
    tau_thres: float = setting(
        0.2, "TTC: the counterattack steps are used when tau < tau_thres, the random start alone otherwise "
        "(TTC.sh: 0.2).", ge=0)
    tau_reference: str = setting(
        "auto", "TTC: which encoder measures tau: 'victim' (the model itself), 'base' (the original CLIP the "
        "victim was fine-tuned from: base_model_name_or_path, else the base the checkpoint records in "
        "tgazsr_recipe.json or conversion.json), or 'auto' (base when one is named or recorded, else the victim).",
        choices=TAU_REFERENCES)
    base_model_name_or_path: str | None = setting(
        None, "TTC: the original CLIP (folder or Hub id) that measures tau for a fine-tuned victim.")


def _sign(grad: torch.Tensor, smooth: bool, temperature: float) -> torch.Tensor:
    """sign(grad); under ``smooth`` its backward pass is tanh(grad / (t max|grad|)) per sample's."""
    hard = grad.sign()
    if not smooth:
        return hard
    scale = grad.detach().flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    soft = torch.tanh(grad / (temperature * scale))
    return hard.detach() + (soft - soft.detach())


def step_weights(beta: float, steps: int) -> torch.Tensor:
    """w_k = exp(beta k) / sum_j exp(beta j), k = 0..K."""
    return torch.softmax(beta * torch.arange(steps + 1, dtype=torch.float64), 0)


def relative_change(moved: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """||moved - anchor|| / ||anchor|| per row (unnormalized embeddings), in float32 at least."""
    moved, anchor = wide(moved), wide(anchor)
    return (moved - anchor).norm(dim=-1) / anchor.norm(dim=-1)


def _math_attention(smooth: bool):
    """Second-order gradients need an attention kernel with a double backward (the math one)."""
    if not smooth:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def counterattack(encode, x: torch.Tensor, noise: torch.Tensor, settings: TTCSettings, tau_encode=None,
                  gradient: str = "bpda", temperature: float = 0.1, parts: dict | None = None) -> torch.Tensor:
    """Delta(X) of TTC (the module's steps 1 to 4). ``encode``: images -> the victim's unnormalized
    embeddings; ``noise``: U[-eps, eps] draws of ``x``'s shape (pixel units); ``tau_encode``: the
    encoder g of tau when it is not the victim. ``parts`` (a dict) receives d0..dK, tau and the
    weights used, for tests."""
    eps, a, steps = in_pixels(settings.eps), in_pixels(settings.step_size), settings.steps
    smooth, track = gradient == "smooth", gradient != "bpda"
    xin = x if track else x.detach()
    if eps <= 0:
        return torch.zeros_like(x)
    d0 = (xin + noise.to(x)).clamp(0, 1) - xin
    if not track:
        d0 = d0.detach()
    if parts is not None:
        parts["d"] = [d0.detach()]
    if steps == 0:
        return d0
    ds, d, tau = [d0], d0, None
    with torch.enable_grad(), _math_attention(smooth):
        with (contextlib.nullcontext() if smooth else torch.no_grad()):
            anchor = encode(xin)
        for k in range(1, steps + 1):
            leaf = d if (smooth and d.requires_grad) else d.detach().requires_grad_(True)
            emb = encode(xin + leaf)
            if k == 1 and tau_encode is None:  # g = f, measured at the counterattack's step 0
                tau = relative_change(emb if smooth else emb.detach(), anchor)
            loss = ((emb - anchor) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, leaf, create_graph=smooth)
            d = (d + a * _sign(grad, smooth, temperature)).clamp(-eps, eps)
            d = (xin + d).clamp(0, 1) - xin
            if not track:
                d = d.detach()
            ds.append(d)
        if tau_encode is not None:
            with (contextlib.nullcontext() if smooth else torch.no_grad()):
                tau = relative_change(tau_encode(xin + d0), tau_encode(xin))
    weights = step_weights(settings.beta, steps).to(device=x.device, dtype=x.dtype)
    weighted = sum(w * dk for w, dk in zip(weights, ds))
    use_steps = tau < settings.tau_thres  # a tie falls back to the random start
    shape = (-1,) + (1,) * (x.dim() - 1)
    if smooth:
        soft = torch.sigmoid((settings.tau_thres - tau) / (temperature * max(settings.tau_thres, 1e-12)))
        m = (use_steps.to(x.dtype) + (soft - soft.detach()).to(x.dtype)).view(shape)
        delta = m * weighted + (1 - m) * d0
    else:
        delta = torch.where(use_steps.view(shape), weighted, d0)
    if parts is not None:
        parts.update(d=[dk.detach() for dk in ds], tau=tau.detach(), use_steps=use_steps, weights=weights)
    return delta if track else delta.detach()


class TTCDefense(DefendedClassifier):
    """The victim scoring X + Delta(X)."""

    def _reference(self):
        """The encoder g of tau when it is not the victim (``prepare_tau``'s), else None."""
        return self.context.resources.encoder if self.context.resources is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, ctx = self.settings, self.context
        noise = self.uniform(x, in_pixels(s.eps)) if s.eps > 0 else torch.zeros_like(x)
        reference = self._reference()
        tau_encode = (lambda z: reference(z).embeds) if reference is not None else None
        delta = counterattack(lambda z: self.model(z).embeds, x, noise, s, tau_encode, ctx.gradient, ctx.temperature)
        return self.undefended(x + delta)

    def adaptive_term(self, x: torch.Tensor) -> torch.Tensor | None:
        """Attack the switch (METHOD.md, adaptive evaluation, 4): ``weight * min(tau / tau_thres,
        SWITCH_MARGIN)``, tau measured at ``x`` with a fresh random start and differentiated as it
        is (tau is smooth in x). Raising tau to the threshold makes TTC fall back to its random
        noise, which EOT handles; the cap stops the term pulling once tau is clear of the threshold,
        with room for the next draw's noise, so the misclassification term decides from there."""
        s, ctx = self.settings, self.context
        if ctx.term_weight <= 0 or s.eps <= 0 or s.tau_thres <= 0:
            return None
        noise = self.uniform(x, in_pixels(s.eps))
        reference = self._reference()
        encode = reference if reference is not None else self.model
        with torch.enable_grad():
            d0 = ((x + noise.to(x)).clamp(0, 1) - x).detach()
            tau = relative_change(encode(x + d0).embeds, encode(x).embeds)
        return ctx.term_weight * torch.clamp(tau / s.tau_thres, max=SWITCH_MARGIN)


@dataclass
class TauReference:
    """The encoder of tau (None: the victim) and what names it in the results."""

    encoder: object | None
    reference: str  # 'victim' or 'base'
    model: str | None = None
    fingerprint: str | None = None


def _recorded_names(folder: str):
    """The base models a checkpoint folder records, as written: tgazsr.train's local run_recipe.json
    (the path as given) and its published tgazsr_recipe.json (under ``model``; a local folder by its
    name only), tgazsr.convert's conversion.json (``base_model``)."""
    for name, keys in (("run_recipe.json", ("fields", "model_name_or_path")),
                       ("tgazsr_recipe.json", ("model", "model_name_or_path")), ("conversion.json", ("base_model",))):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
        except (OSError, ValueError):
            continue
        if isinstance(value, str) and value:
            yield value


def recorded_base_model(model_name_or_path: str | None) -> str | None:
    """The base model a checkpoint folder records when it names one that can be found: a Hub id
    ``org/name``, or a local folder (as written, or, since a published recipe keeps only a local
    folder's name, a folder of that name beside the checkpoint)."""
    if not model_name_or_path or not os.path.isdir(model_name_or_path):
        return None
    here = os.path.abspath(model_name_or_path)
    for value in _recorded_names(model_name_or_path):
        beside = os.path.join(os.path.dirname(here), value)
        for candidate in (value, beside):
            if os.path.isdir(candidate) and os.path.isfile(os.path.join(candidate, "config.json")):
                if os.path.abspath(candidate) != here:
                    return candidate
        if value.count("/") == 1 and not os.path.isabs(value) and not os.path.exists(value):
            return value  # a Hub id: loaded (from the cache when offline) by prepare_tau
        logger.warning("TTC: %s records its base model as %r, which is not a folder here nor a Hub id; tau is "
                       "measured by the victim unless --ttc_base_model_name_or_path names the base.",
                       model_name_or_path, value)
    return None


def prepare_tau(model, settings, args) -> TauReference:
    """Resolve ``tau_reference`` once per run, loading the base model when it measures tau."""
    victim = getattr(args, "model_name_or_path", None)
    base = settings.base_model_name_or_path
    if settings.tau_reference == "victim":
        return TauReference(None, "victim")
    if base is None:
        base = recorded_base_model(victim)
    if base is None:
        if settings.tau_reference == "base":
            raise TauReferenceError(
                "ttc_tau_reference = 'base', but no base model is known for this checkpoint: pass "
                "--ttc_base_model_name_or_path with the CLIP it was fine-tuned from (e.g. openai/clip-vit-base-patch32), "
                "or --ttc_tau_reference victim.")
        logger.info("TTC: tau is measured by the victim itself (no base model named or recorded).")
        return TauReference(None, "victim")
    from ..evaluation.model import model_fingerprint, resolve_normalization
    from ..modeling import ZeroShotCLIP, load_clip

    try:
        clip = load_clip(base)
    except Exception as err:  # noqa: BLE001 - said with the fix
        raise TauReferenceError(
            f"TTC's tau is to be measured by the base model {base!r}, which cannot be loaded ({err}). Pass "
            "--ttc_base_model_name_or_path with a local copy, or --ttc_tau_reference victim.") from None
    from ..backbones import backbone_for

    encoder = ZeroShotCLIP(clip, resolve_normalization("auto", base, backbone_for(clip))).to(model.pixel_mean.device).eval()
    encoder.requires_grad_(False)
    if encoder.image_size != model.image_size:
        raise TauReferenceError(f"TTC's base model {base!r} takes {encoder.image_size}-pixel images, the victim "
                                f"{model.image_size}: pass --ttc_base_model_name_or_path with the victim's own base.")
    logger.info("TTC: tau is measured by the base model %s.", base)
    return TauReference(encoder, "base", base, model_fingerprint(clip))


def tau_identity(resources: TauReference | None) -> dict:
    if resources is None:
        return {}
    return {"tau_reference": resources.reference, "tau_model": resources.model,
            "tau_model_fingerprint": resources.fingerprint}


register_defense(DefenseSpec(
    "ttc", TTCSettings, TTCDefense, random=True, prepare=prepare_tau, identity=tau_identity,
    description="TTC test-time counterattacks (Xing et al., CVPR 2025)", paper=TTC_PAPER,
    adaptive_term=f"raises tau above tau_thres (to {SWITCH_MARGIN:g} tau_thres), so that TTC falls back to its random "
                  "noise (METHOD.md: attack the switch)",
))
