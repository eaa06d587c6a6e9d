"""Mapping OpenAI / open_clip weights onto CLIPModel's names (the table of :mod:`tgazsr.convert`),
with a record of every source tensor taken."""

from __future__ import annotations

from typing import Mapping

import torch

from .base import ConversionError

class _Source:
    """The source state dict, with a record of every key taken."""

    def __init__(self, sd: Mapping[str, torch.Tensor]):
        self.sd, self.used = sd, set()

    def take(self, key: str) -> torch.Tensor:
        if key not in self.sd:
            raise ConversionError(f"The checkpoint has no {key!r}: it is incomplete or not an OpenAI / open_clip CLIP.")
        self.used.add(key)
        return self.sd[key].detach().to(torch.float32)


#: An OpenAI / open_clip residual block's weights besides the fused q/k/v, as (source, transformers) names.
OPEN_CLIP_BLOCK = (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                   ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))


def _map_blocks(src: _Source, out: dict, src_prefix: str, dst_prefix: str, layers: int) -> None:
    for i in range(layers):
        map_block(src, out, f"{src_prefix}transformer.resblocks.{i}.", f"{dst_prefix}encoder.layers.{i}.",
                  "attn.in_proj_", OPEN_CLIP_BLOCK)


def _map_vision(src: _Source, out: dict, layers: int) -> None:
    v, d = "visual.", "vision_model."
    out[f"{d}embeddings.class_embedding"] = src.take(v + "class_embedding")
    out[f"{d}embeddings.patch_embedding.weight"] = src.take(v + "conv1.weight")
    out[f"{d}embeddings.position_embedding.weight"] = src.take(v + "positional_embedding")
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        out[f"{d}{b}.weight"] = src.take(f"{v}{a}.weight")
        out[f"{d}{b}.bias"] = src.take(f"{v}{a}.bias")
    _map_blocks(src, out, v, d, layers)
    out["visual_projection.weight"] = src.take(v + "proj").t().contiguous()


def _map_text(src: _Source, out: dict, layers: int) -> None:
    d = "text_model."
    out[f"{d}embeddings.token_embedding.weight"] = src.take("token_embedding.weight")
    out[f"{d}embeddings.position_embedding.weight"] = src.take("positional_embedding")
    out[f"{d}final_layer_norm.weight"] = src.take("ln_final.weight")
    out[f"{d}final_layer_norm.bias"] = src.take("ln_final.bias")
    _map_blocks(src, out, "", d, layers)
    out["text_projection.weight"] = src.take("text_projection").t().contiguous()
    out["logit_scale"] = src.take("logit_scale").reshape(())


def map_block(src: _Source, out: dict, s: str, t: str, fused: str, names: tuple[tuple[str, str], ...]) -> None:
    """One transformer block from ``s`` (source prefix) to ``t``: the fused ``fused`` q/k/v weight and
    bias split in three, and each ``(source, target)`` pair of ``names`` (weights and biases)."""
    for kind in ("weight", "bias"):
        for name, part in zip("qkv", src.take(f"{s}{fused}{kind}").chunk(3, dim=0)):
            out[f"{t}self_attn.{name}_proj.{kind}"] = part.clone()
        for a, b in names:
            out[f"{t}{b}.{kind}"] = src.take(f"{s}{a}.{kind}")


def refuse_unused(sd, src: _Source, where: str, model_name: str, parts: str) -> None:
    """Every source tensor was taken, or a ConversionError naming those a ``model_name`` has no place for."""
    unused = sorted(set(sd) - src.used)
    if unused:
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        raise ConversionError(f"{where} holds weights a {model_name} has no place for: {shown}. Converting would drop "
                              f"them ({parts}), so it is refused.")


def fill_strictly(model, mapped: dict, where: str, arch: dict):
    """Load ``mapped`` into ``model``: exactly its weights, each of its shape; returns it in eval mode."""
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
    if missing or extra:
        raise ConversionError(f"The mapped weights do not fill the {type(model).__name__}: missing {missing[:6]}, "
                              f"unexpected {extra[:6]}.")
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise ConversionError(f"{where}: the weights do not fit the inferred architecture ({arch}): {err}") from err
    return model.eval()
