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


def _map_blocks(src: _Source, out: dict, src_prefix: str, dst_prefix: str, layers: int) -> None:
    for i in range(layers):
        s, d = f"{src_prefix}transformer.resblocks.{i}.", f"{dst_prefix}encoder.layers.{i}."
        for name, part in zip(("q", "k", "v"), src.take(s + "attn.in_proj_weight").chunk(3, dim=0)):
            out[f"{d}self_attn.{name}_proj.weight"] = part.clone()
        for name, part in zip(("q", "k", "v"), src.take(s + "attn.in_proj_bias").chunk(3, dim=0)):
            out[f"{d}self_attn.{name}_proj.bias"] = part.clone()
        for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[f"{d}{b}.weight"] = src.take(f"{s}{a}.weight")
            out[f"{d}{b}.bias"] = src.take(f"{s}{a}.bias")


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
