"""Loss functions, each a pure function of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DISTANCE_METRICS = ("l2", "l1", "cos")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of zero-shot logits (TeCoA's loss)."""
    return F.cross_entropy(logits.float(), labels)


def contrastive(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric loss over a batch (FT-Clean, FT-Adv).

    image_embeds (B, D), text_embeds (B, D): the images and the prompts of their labels. The i-th
    image is matched to the i-th prompt; the loss is the mean of the image->text and text->image
    cross-entropies of ``scale * cos`` similarities.
    """
    img = F.normalize(image_embeds.float(), dim=-1)
    txt = F.normalize(text_embeds.float(), dim=-1)
    logits = scale * img @ txt.t()
    target = torch.arange(len(img), device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def sigmoid_contrastive(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor | float,
                        bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's sigmoid loss over a batch (FT-Clean, FT-Adv on SigLIP).

    image_embeds (B, D), text_embeds (B, D): the i-th image is matched to the i-th prompt. With
    ``z_ij = scale * cos(x_i, y_j) + bias`` and ``l_ij = +1`` for the matching pair, ``-1``
    otherwise, the loss is ``-(1/B) * sum_ij log sigmoid(l_ij * z_ij)``: summed over the B*B
    pairs and divided by the batch size B, as in the SigLIP paper's definition and its
    pseudo-code (Zhai et al. 2023, https://arxiv.org/abs/2303.15343, section 3.2 and algorithm 1).
    """
    img = F.normalize(image_embeds.float(), dim=-1)
    txt = F.normalize(text_embeds.float(), dim=-1)
    logits = scale * img @ txt.t() + bias
    signs = 2 * torch.eye(len(img), device=img.device) - 1
    return -F.logsigmoid(signs * logits).sum() / len(img)


def attention_distance(a: torch.Tensor, b: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """Distance between two batches of flattened attention maps (B, H*W).

    l2: per-sample L2 norm of the difference, mean over the batch (the reference default);
    l1: elementwise mean absolute difference; cos: mean of 1 - cosine similarity.
    """
    a, b = a.float(), b.float()
    if metric == "l2":
        return (a - b).norm(dim=-1).mean()
    if metric == "l1":
        return (a - b).abs().mean()
    if metric == "cos":
        return (1.0 - F.cosine_similarity(a, b, dim=-1)).mean()
    raise ValueError(f"Unknown distance_metric {metric!r}; choose one of {DISTANCE_METRICS}.")


def kl_divergence(
    p_logits: torch.Tensor, q_logits: torch.Tensor, reduction: str = "sum", detach_p: bool = False
) -> torch.Tensor:
    """KL(p || q) with p = softmax(p_logits), q = softmax(q_logits), summed over classes.

    ``reduction="sum"`` sums over the batch (as PMG-AFT's released code does), ``"mean"``
    averages over it. With ``detach_p=False`` gradients flow through both distributions.
    """
    p_logits, q_logits = p_logits.float(), q_logits.float()
    if detach_p:
        p_logits = p_logits.detach()
    log_p = F.log_softmax(p_logits, dim=-1)
    per_sample = (log_p.exp() * (log_p - F.log_softmax(q_logits, dim=-1))).sum(-1)
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"Unknown KL reduction {reduction!r}; choose 'sum' or 'mean'.")


def embedding_l2(embeds: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """FARE: squared L2 distance of unnormalized embeddings, summed over dimensions,
    averaged over the batch (``reduce=False`` gives the per-sample values, for the attack)."""
    per_sample = (embeds.float() - target.float()).pow(2).sum(-1)
    return per_sample.mean() if reduce else per_sample


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample CW margin ``min(max_{j != y} z_j - z_y, kappa)``.

    Maximizing it pushes the best wrong class above the true one until it leads by ``kappa``
    (the usual ``-relu(z_y - max_{j != y} z_j + kappa)`` up to a constant)."""
    logits = logits.float()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return (others.amax(1) - true).clamp(max=kappa)
