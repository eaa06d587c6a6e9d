"""Attention maps: text-guided (TGA-ZSR), complementary (Comp-TGA) and vision-based.

All maps are returned as (B, H*W) tensors: a sqrt(N) x sqrt(N) patch map, min-max normalized
over the patches, bilinearly upsampled (align_corners=False) to the image size and flattened.
The loss weights alpha and beta of METHOD.md assume this upsampled size.

Maps are computed in float32 even under bf16/fp16 autocast: the attention losses are distances
between nearly equal maps (an image and its adversarial copy differ by a few grey levels), and a
16-bit map's rounding is of the size of that difference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ATTENTION_NORMS = ("token_axis", "per_token")


def float32(t: torch.Tensor):
    """A region where autocast is off, so the maps stay float32 under mixed precision."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or wider if it already is (float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def min_max(scores: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Min-max normalize over the last axis; a constant row gives zeros, not NaN."""
    lo = scores.amin(dim=-1, keepdim=True)
    hi = scores.amax(dim=-1, keepdim=True)
    return (scores - lo) / (hi - lo + eps)


def upsample_patch_map(patch_scores: torch.Tensor, image_size: int | tuple[int, int]) -> torch.Tensor:
    """(B, N) patch scores -> (B, H*W) map, bilinear, align_corners=False."""
    b, n = patch_scores.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"Expected a square grid of patches, got {n} patches.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    grid = patch_scores.reshape(b, 1, side, side)
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False).flatten(1)


def text_guided_attention(
    tokens: torch.Tensor,
    text: torch.Tensor,
    image_size: int | tuple[int, int],
    norm: str = "token_axis",
    eps: float = 1e-8,
    prefix: int = 1,
) -> torch.Tensor:
    """A(x; t): how strongly each patch aligns with the text embedding of its class.

    tokens: (B, P+N, D) projected tokens, the ``prefix`` = P non-patch tokens first (CLIP's CLS:
    P = 1). text: (B, D) normalized text embeddings (the true class's prompt per sample).
    ``norm="token_axis"`` divides each feature dimension by its L2 norm across all P+N tokens, as
    the reference code does; ``"per_token"`` normalizes each token (cosine per patch).
    """
    with float32(tokens):
        tokens, text = wide(tokens), wide(text)
        if norm == "token_axis":
            q = tokens / (tokens.norm(dim=1, keepdim=True) + eps)
        elif norm == "per_token":
            q = F.normalize(tokens, dim=-1, eps=eps)
        else:
            raise ValueError(f"Unknown attention_norm {norm!r}; choose one of {ATTENTION_NORMS}.")
        scores = torch.einsum("bnd,bd->bn", q[:, prefix:], text)
        return upsample_patch_map(min_max(scores, eps), image_size)


def complementary_attention(
    tokens: torch.Tensor,
    text: torch.Tensor,
    negated_text: torch.Tensor,
    image_size: int | tuple[int, int],
    norm: str = "token_axis",
    eps: float = 1e-8,
    prefix: int = 1,
) -> torch.Tensor:
    """Comp-TGA: A(x; t_y) * (1 - A(x; t_not_y)), t_not_y from "This is not a photo of a {}"."""
    positive = text_guided_attention(tokens, text, image_size, norm, eps, prefix)
    negative = text_guided_attention(tokens, negated_text, image_size, norm, eps, prefix)
    return positive * (1.0 - negative)


def vision_attention(
    attentions: torch.Tensor, image_size: int | tuple[int, int], eps: float = 1e-8, prefix: int = 1
) -> torch.Tensor:
    """Vision-based variant (our differentiable definition): the last layer's attention from the
    pooling query (CLIP's CLS) to the patches, averaged over heads, min-max normalized and upsampled.

    attentions: (B, heads, Q, P+N) softmax weights of the last attention layer, row 0 the pooling
    query, the ``prefix`` = P non-patch keys first.
    """
    with float32(attentions):
        cls_to_patch = wide(attentions[:, :, 0, prefix:]).mean(dim=1)
        return upsample_patch_map(min_max(cls_to_patch, eps), image_size)
