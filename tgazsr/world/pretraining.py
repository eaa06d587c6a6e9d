"""Contrastive pretraining of the world's tiny CLIP, and saving it as a plain transformers model folder.

The model is a ViT CLIP whose sizes ``WorldSpec`` holds (by default: vision 56 px, patch 8,
width 96, 4 layers; text width 64, 2 layers, causal, 77 positions; projection 64).

Pretraining is CLIP's symmetric contrastive loss over the batch, with one change: since a
caption names only some attributes, several images of a batch can fit it ("a drawing of a
star." fits every star). The targets of each row are therefore spread uniformly over every
pair the caption truly describes (multi-positive contrastive learning) instead of being one
hot; with one-hot targets those true matches would be pushed apart as negatives.
A second, "attribute-contrast" term (``_attribute_contrast``) sets each image against one
caption per value of each attribute (hard negatives that differ in that attribute only) and
each such caption against a paraphrase of it; without it the text tower starts out unable to
tell "a drawing of a star." from "a drawing of a cross.", and shapes are never learned.

By default pretraining runs 600 steps of batch 256 over 25,600 images (6 epochs, a fresh
caption per image and epoch) with AdamW and a cosine schedule. The number of threads follows
the idle cores (``default_threads``): torch's intra-op threads wait for each other at every
operation, so when a neighbour holds one core two threads run many times slower than one.
The seed fixes the result up to the last bits, which on CPU may vary with the thread count.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Sequence

import numpy as np

from .sets import CAPTION_FRAMES, SINGLE_ATTRIBUTE_FRAMES, caption, progress
from ..cpu import default_threads, torch_threads  # noqa: F401  (also imported from here)
from .spec import ATTRIBUTES, VALUES, ObjectSpec, WorldSpec
from .tokenizer import BOS_TOKEN_ID, EOS_TOKEN_ID, MAX_TEXT_LENGTH, VOCAB_SIZE, make_image_processor, make_tokenizer

logger = logging.getLogger(__name__)


def make_clip_config(spec: WorldSpec):
    """The ``CLIPConfig`` of the world's model (token ids of the character tokenizer)."""
    from transformers import CLIPConfig

    tokenizer_ids = {"bos_token_id": BOS_TOKEN_ID, "eos_token_id": EOS_TOKEN_ID, "pad_token_id": EOS_TOKEN_ID}
    return CLIPConfig(
        text_config=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=spec.text_width,
            intermediate_size=4 * spec.text_width,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.heads,
            max_position_embeddings=MAX_TEXT_LENGTH,
            projection_dim=spec.projection_dim,
            **tokenizer_ids,
        ),
        vision_config=dict(
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            hidden_size=spec.vision_width,
            intermediate_size=4 * spec.vision_width,
            num_hidden_layers=spec.vision_layers,
            num_attention_heads=spec.heads,
            projection_dim=spec.projection_dim,
        ),
        projection_dim=spec.projection_dim,
        **tokenizer_ids,
    )


def _attribute_codes(objects: Sequence[ObjectSpec]) -> np.ndarray:
    """(N, 4) integer codes of the attributes of each object."""
    return np.array([[VALUES[a].index(getattr(o, a)) for a in ATTRIBUTES] for o in objects], np.int64)


def _caption_codes(named: dict[str, str]) -> list[int]:
    """Attribute codes of a caption, -1 where the caption does not say."""
    return [VALUES[a].index(named[a]) if a in named else -1 for a in ATTRIBUTES]


def contrastive_loss(logits, image_codes=None, caption_codes=None):
    """CLIP's symmetric cross-entropy over a batch; multi-positive when codes are given.

    ``logits[i, j]`` scores image i against caption j. With ``image_codes`` (B, A) and
    ``caption_codes`` (B, A; -1 = not said), caption j is a positive of image i whenever
    every attribute the caption names matches the image, and each row's target is uniform
    over its positives (the diagonal always is one).
    """
    import torch
    import torch.nn.functional as F

    if image_codes is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    said = caption_codes[None, :, :] >= 0
    agree = caption_codes[None, :, :] == image_codes[:, None, :]
    positive = (agree | ~said).all(-1).float()  # (images, captions)
    image_to_text = -(positive / positive.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    positive_t = positive.t()
    text_to_image = -(positive_t / positive_t.sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def attribute_prompts(rng: np.random.Generator) -> dict[str, list[str]]:
    """For each attribute, one caption per value in one randomly chosen frame.

    These are the candidate captions of the attribute-contrast term of pretraining.
    """
    prompts = {}
    for a in ATTRIBUTES:
        if a == "shape":
            phrases = {v: v for v in VALUES[a]}
        else:
            noun = ("object", "shape", "thing")[int(rng.integers(3))]
            phrases = {v: f"{v} {noun}" for v in VALUES[a]}
        if rng.uniform() < 0.5:
            frames = SINGLE_ATTRIBUTE_FRAMES[a]
            frame = frames[int(rng.integers(len(frames)))]
            prompts[a] = [frame.format(v) for v in VALUES[a]]
        else:
            frame = CAPTION_FRAMES[int(rng.integers(len(CAPTION_FRAMES)))]
            prompts[a] = [frame.format(phrases[v]) for v in VALUES[a]]
    return prompts


def _attribute_contrast(model, image_embeds, image_codes, prompts, paraphrases, tokenizer):
    """Two contrastive terms against curated captions, averaged over the four attributes.

    - image -> caption: each image against one caption per value of the attribute (the
      captions differ only in that attribute, so they are hard negatives of each other);
    - caption -> paraphrase: each of those captions against the same values in another
      frame (``paraphrases``), a text-only term that makes the text tower tell the values
      apart from the first steps on. Without it the freshly initialized text tower gives
      nearly the same embedding to "a drawing of a star." and "a drawing of a cross.", the
      image tower then gets no signal to learn shapes, and neither side ever starts.

    ``image_embeds`` are normalized; the captions are encoded here, with gradients.
    """
    import torch
    import torch.nn.functional as F

    texts = [t for group in (prompts, paraphrases) for a in ATTRIBUTES for t in group[a]]
    tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    text = F.normalize(text if isinstance(text, torch.Tensor) else text.pooler_output, dim=-1)
    half = len(texts) // 2
    first, second = text[:half], text[half:]
    scale = model.logit_scale.exp()
    loss, start = 0.0, 0
    for k, a in enumerate(ATTRIBUTES):
        n = len(VALUES[a])
        block = slice(start, start + n)
        loss = loss + F.cross_entropy(scale * image_embeds @ first[block].t(), image_codes[:, k])
        target = torch.arange(n)
        text_logits = scale * first[block] @ second[block].t()
        loss = loss + (F.cross_entropy(text_logits, target) + F.cross_entropy(text_logits.t(), target)) / 2
        start += n
    return loss / len(ATTRIBUTES)


def pretrain_clip(
    images: np.ndarray, objects: Sequence[ObjectSpec], spec: WorldSpec, seed: int = 0, tokenizer=None
):
    """Contrastive pretraining of a fresh CLIP on the world's images.

    Every epoch draws a new caption for every image (the seed fixes which), so the model sees
    many phrasings of each object. Returns ``(model, info)``, ``info`` holding the
    wall time of the optimization loop alone and the last losses.
    """
    import torch
    from ..backbones.clip import CLIPBackbone

    from ..modeling import CLIP_MEAN, CLIP_STD

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    model = CLIPBackbone.model_class()(make_clip_config(spec))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.98),
    )
    n = len(images)
    steps_per_epoch = max(1, n // spec.batch_size)
    total = steps_per_epoch * spec.epochs
    warmup = max(1, int(spec.warmup_fraction * total))
    schedule = lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, S, S)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    image_codes = torch.from_numpy(_attribute_codes(objects))
    max_logit_scale = math.log(100.0)
    losses: list[float] = []

    with torch_threads(spec.threads):
        threads = torch.get_num_threads()
        logger.info("pretraining on %d thread(s)", threads)
        start, cpu_start = time.perf_counter(), time.process_time()
        bar = progress(range(total), "pretraining CLIP")
        step_iter = iter(bar)
        for epoch in range(spec.epochs):
            order_rng = np.random.default_rng([seed, 11, epoch])
            order = order_rng.permutation(n)
            caption_rng = np.random.default_rng([seed, 13, epoch])
            for b in range(steps_per_epoch):
                next(step_iter, None)
                idx = order[b * spec.batch_size : (b + 1) * spec.batch_size]
                texts, codes = [], []
                for i in idx:
                    text, named = caption(objects[i], caption_rng)
                    texts.append(text)
                    codes.append(_caption_codes(named))
                tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                x = pixels[torch.from_numpy(idx)].float() / 255.0
                flip = torch.from_numpy(order_rng.random(len(idx)) < 0.5)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                out = model(
                    input_ids=tokens["input_ids"],
                    attention_mask=tokens["attention_mask"],
                    pixel_values=(x - mean) / std,
                )
                batch_codes = image_codes[torch.from_numpy(idx)]
                if spec.multi_positive:
                    loss = contrastive_loss(out.logits_per_image, batch_codes, torch.tensor(codes))
                else:
                    loss = contrastive_loss(out.logits_per_image)
                if spec.attribute_loss_weight > 0:
                    loss = loss + spec.attribute_loss_weight * _attribute_contrast(
                        model,
                        out.image_embeds,
                        batch_codes,
                        attribute_prompts(caption_rng),
                        attribute_prompts(caption_rng),
                        tokenizer,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, max_logit_scale)
                losses.append(loss.item())
                if hasattr(bar, "set_postfix") and len(losses) % 10 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        if hasattr(bar, "close"):
            bar.close()
    model.eval()
    info = {
        "pretrain_seconds": seconds,
        "pretrain_cpu_seconds": cpu_seconds,
        "steps": total,
        "threads": threads,
        "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "logit_scale": float(model.logit_scale.exp().item()),
    }
    logger.info("pretrained CLIP: %d steps in %.1f s, loss %.3f", total, seconds, info["final_loss"])
    return model, info


def save_model(model, directory: str | os.PathLike, spec: WorldSpec, tokenizer=None) -> None:
    """A plain model directory (the CLIP backbone's class): safetensors weights, tokenizer, image processor."""
    from transformers import CLIPProcessor

    tokenizer = tokenizer or make_tokenizer()
    model.save_pretrained(directory, safe_serialization=True)
    CLIPProcessor(image_processor=make_image_processor(spec.image_size), tokenizer=tokenizer).save_pretrained(directory)
