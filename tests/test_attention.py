import math

import torch
import torch.nn.functional as F

from tgazsr.attention import (
    complementary_attention,
    min_max,
    text_guided_attention,
    upsample_patch_map,
    vision_attention,
)


def hand_map(tokens, text, size, per_token=False):
    """Spelled out for one sample, loop by loop."""
    n_tok, d = tokens.shape
    if per_token:
        q = [[tokens[i, k] / math.sqrt(sum(tokens[i, j] ** 2 for j in range(d))) for k in range(d)] for i in range(n_tok)]
    else:
        col_norm = [math.sqrt(sum(tokens[i, k] ** 2 for i in range(n_tok))) for k in range(d)]
        q = [[tokens[i, k] / col_norm[k] for k in range(d)] for i in range(n_tok)]
    scores = [sum(q[i][k] * text[k] for k in range(d)) for i in range(1, n_tok)]
    lo, hi = min(scores), max(scores)
    scores = [(s - lo) / (hi - lo) for s in scores]
    side = int(math.isqrt(len(scores)))
    grid = torch.tensor(scores, dtype=torch.float64).view(1, 1, side, side)
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False).flatten()


def test_text_guided_attention_matches_hand_computation():
    torch.manual_seed(0)
    tokens = torch.randn(2, 1 + 4, 3, dtype=torch.float64)
    text = F.normalize(torch.randn(2, 3, dtype=torch.float64), dim=-1)
    out = text_guided_attention(tokens, text, image_size=6, eps=0.0)
    assert out.shape == (2, 36)
    for b in range(2):
        torch.testing.assert_close(out[b], hand_map(tokens[b], text[b], 6))
    per_token = text_guided_attention(tokens, text, image_size=6, norm="per_token", eps=0.0)
    torch.testing.assert_close(per_token[0], hand_map(tokens[0], text[0], 6, per_token=True))


def test_token_axis_norm_is_over_tokens_not_features():
    # Scaling one token changes the token-axis normalized map but not the per-token one.
    torch.manual_seed(1)
    tokens = torch.randn(1, 5, 4, dtype=torch.float64)
    text = F.normalize(torch.randn(1, 4, dtype=torch.float64), dim=-1)
    scaled = tokens.clone()
    scaled[:, 2] *= 3.0
    a = text_guided_attention(tokens, text, 4, norm="per_token")
    b = text_guided_attention(scaled, text, 4, norm="per_token")
    torch.testing.assert_close(a, b)
    c = text_guided_attention(tokens, text, 4, norm="token_axis")
    d = text_guided_attention(scaled, text, 4, norm="token_axis")
    assert not torch.allclose(c, d)


def test_min_max_constant_map_has_no_nan():
    flat = torch.ones(2, 9)
    out = min_max(flat)
    assert torch.isfinite(out).all() and (out == 0).all()
    tokens = torch.ones(1, 10, 4)
    amap = text_guided_attention(tokens, torch.ones(1, 4) / 2, 12)
    assert torch.isfinite(amap).all()


def test_map_range_and_upsampling_shape():
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    up = upsample_patch_map(min_max(scores), 8)
    assert up.shape == (1, 64)
    assert up.min() >= 0 and up.max() <= 1
    # Bilinear with align_corners=False keeps the corner pixels at the corner patch values.
    grid = up.view(8, 8)
    assert grid[0, 0] == 0 and torch.isclose(grid[-1, -1], torch.tensor(1.0))


def test_complementary_attention_is_product():
    torch.manual_seed(2)
    tokens = torch.randn(3, 5, 8)
    t_pos = F.normalize(torch.randn(3, 8), dim=-1)
    t_neg = F.normalize(torch.randn(3, 8), dim=-1)
    comp = complementary_attention(tokens, t_pos, t_neg, 4)
    expected = text_guided_attention(tokens, t_pos, 4) * (1 - text_guided_attention(tokens, t_neg, 4))
    torch.testing.assert_close(comp, expected)
    assert comp.min() >= 0 and comp.max() <= 1


def test_vision_attention_from_weights():
    attn = torch.zeros(1, 2, 5, 5)
    attn[0, 0, 0, 1:] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    attn[0, 1, 0, 1:] = torch.tensor([0.3, 0.2, 0.1, 0.0])
    out = vision_attention(attn, 2)  # 2x2 patches upsampled to 2x2 = identity
    assert torch.allclose(out, torch.zeros(1, 4))  # constant after the head mean: zeros, finite
    attn[0, 1, 0, 1:] = torch.tensor([0.0, 0.0, 0.0, 0.4])
    out = vision_attention(attn, 2)
    expected = min_max((attn[0, :, 0, 1:].mean(0))[None])
    torch.testing.assert_close(out, expected)


def test_attention_is_differentiable():
    tokens = torch.randn(2, 5, 8, requires_grad=True)
    text = F.normalize(torch.randn(2, 8), dim=-1)
    text_guided_attention(tokens, text, 4).sum().backward()
    assert tokens.grad is not None and torch.isfinite(tokens.grad).all()
