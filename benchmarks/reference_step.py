"""A TGA-ZSR training step with the structure of the reference code, for the speed ratio.

Written here (not copied) from how the reference training script is organized, using tgazsr's
own loss functions so that both steps compute the same loss:
- the class prompts are tokenized to OpenAI CLIP's fixed context of 77 tokens and re-encoded by
  the text tower, with gradients, at every step and again inside every attack iteration (the
  reference leaves ``requires_grad`` on for the whole CLIP and only its optimizer ignores the text
  tower, so every backward also runs through the text tower);
- the attack calls ``backward()`` on the model, which fills the parameters' gradients (the
  reference leaks them into the update; here they are zeroed before the loss's backward so that
  both steps produce the same gradients, while the work is still done);
- the adversarial image goes through the vision tower twice (logits, then attention tokens), the
  clean image twice more (trained model and frozen model);
- the frozen model runs with gradients on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tgazsr import losses
from tgazsr.attention import text_guided_attention


def _encode_text(clip, tokens) -> torch.Tensor:
    out = clip.get_text_features(**tokens)
    feats = out if isinstance(out, torch.Tensor) else out.pooler_output
    return F.normalize(feats, dim=-1)


def _vision(model, x, tokens: bool):
    return model(x, output_tokens=tokens)


def reference_step(model, frozen, tokenizer, class_names, template, x, y, cfg) -> torch.Tensor:
    """One TGA-ZSR step (attack, forwards, loss, backward) with the reference's structure; returns the loss.

    ``model`` is a ZeroShotCLIP in train mode whose vision tower is trainable; ``frozen`` a
    FrozenImageEncoder-like module whose parameters are made to require gradients here, as the
    reference's frozen copy does. ``cfg`` carries train_eps, train_stepsize, train_numsteps, alpha,
    beta, distance_metric, attention_norm (units of 1/255)."""
    prompts = [template.format(c) for c in class_names]
    context = min(77, model.clip.config.text_config.max_position_embeddings)  # OpenAI CLIP's clip.tokenize: 77
    tokens = tokenizer(prompts, padding="max_length", max_length=context, truncation=True, return_tensors="pt")
    tokens = {k: v.to(x.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
    for p in frozen.parameters():
        p.requires_grad_(True)
    clip = model.clip
    trainable = {n: p.requires_grad for n, p in clip.named_parameters()}
    for p in clip.parameters():  # as in the reference: gradients on for the whole model
        p.requires_grad_(True)
    try:
        return _step(model, frozen, clip, tokens, x, y, cfg)
    finally:
        for n, p in clip.named_parameters():
            if not trainable[n]:
                p.requires_grad_(False)
                p.grad = None  # the text tower's gradients are work the reference does and never uses


def _step(model, frozen, clip, tokens, x, y, cfg) -> torch.Tensor:
    eps, alpha_step = cfg.train_eps / 255, cfg.train_stepsize / 255

    # The attack: the prompts are re-encoded inside every iteration, backward() on the model.
    delta = (torch.rand_like(x) * 2 - 1) * eps
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(cfg.train_numsteps):
        delta.requires_grad_(True)
        text = _encode_text(clip, tokens)
        logits = model.logit_scale * F.normalize(_vision(model, x + delta, False).embeds, dim=-1) @ text.t()
        F.cross_entropy(logits.float(), y).backward()
        grad = delta.grad.detach()
        delta = (delta.detach() + alpha_step * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).detach()
    x_adv = (x + delta).detach()
    clip.zero_grad(set_to_none=True)  # the reference leaks these into its update; zeroed to compare equal work

    # The loss: the prompts re-encoded with gradients, each image through the towers again.
    text = _encode_text(clip, tokens)
    adv_embeds = _vision(model, x_adv, False).embeds  # logits of the adversarial image
    logits_adv = model.logit_scale * F.normalize(adv_embeds, dim=-1) @ text.t()
    ce = losses.cross_entropy(logits_adv, y)
    adv_tokens = _vision(model, x_adv, True).tokens  # the adversarial image again, for its attention
    clean_tokens = _vision(model, x, True).tokens  # the clean image through the trained model
    ref_tokens = frozen(x, output_tokens=True).tokens if not hasattr(frozen, "forward_with_grad") else \
        frozen.forward_with_grad(x)
    t_y = text[y]
    size = x.shape[-1]
    target = text_guided_attention(ref_tokens, t_y, size, cfg.attention_norm)
    ar = losses.attention_distance(text_guided_attention(adv_tokens, t_y, size, cfg.attention_norm),
                                   target, cfg.distance_metric)
    amc = losses.attention_distance(text_guided_attention(clean_tokens, t_y, size, cfg.attention_norm),
                                    target, cfg.distance_metric)
    loss = ce + cfg.alpha * ar + cfg.beta * amc
    loss.backward()
    return loss.detach()


class GradFrozen(torch.nn.Module):
    """The reference's frozen copy: the same weights, with gradients on (graphs built and never used)."""

    def __init__(self, frozen):
        super().__init__()
        self.inner = frozen

    def forward_with_grad(self, x):
        from tgazsr.modeling import encode_image

        f = self.inner
        with torch.enable_grad():
            return encode_image(f, x, f.pixel_mean, f.pixel_std, output_tokens=True, backbone=f.backbone).tokens
