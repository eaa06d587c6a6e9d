"""Pretraining of the world's tiny CLIP (or SigLIP), and saving it as a plain transformers model folder.

The model is a ViT CLIP whose sizes ``WorldSpec`` holds (by default: vision 56 px, patch 8,
width 96, 4 layers; text width 64, 2 layers, causal, 77 positions; projection 64), or with
``WorldSpec.backbone == "siglip"`` a SigLIP of the same widths and depths (no class token: an
attention-pooling head; text bidirectional, 64 positions, pooled at the last one and mapped by its
head to the vision width, 96, which is the joint space).

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

The SigLIP world runs the same loop (same images, captions, order, optimizer and schedule) with
SigLIP's sigmoid loss in place of the softmax terms, as SigLIP was pretrained (Zhai et al., "Sigmoid
Loss for Language Image Pre-Training", ICCV 2023, https://arxiv.org/abs/2303.15343, section 3.2 and
algorithm 1): every image-caption pair of the batch is a binary problem on ``z = t cos + b``, with
``t = exp(logit_scale)`` and ``b = logit_bias`` initialised to ``log 10`` and ``-10`` as there. Both
extra terms of the CLIP world carry over, since the reasons for them hold for any image-text loss:

- multi-positive (``sigmoid_loss``): the label of a pair is +1 wherever the caption truly describes
  the image, not on the diagonal only (``-(1/B) sum_ij log sigmoid(l_ij z_ij)`` with those labels);
  with one-hot labels the true matches would be pushed apart, as with CLIP's loss;
- attribute contrast (``_attribute_contrast``): each image against one caption per value of each
  attribute, label +1 for its own value, and each such caption against its paraphrase, label +1 on
  the diagonal; both as sigmoid terms on the model's own ``t`` and ``b``, summed over the pairs and
  divided by the number of rows, as the batch term is.
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
from .tokenizer import (BOS_TOKEN_ID, EOS_TOKEN_ID, MAX_TEXT_LENGTH, VOCAB_SIZE, make_image_processor,
                        make_siglip_image_processor, make_tokenizer)

logger = logging.getLogger(__name__)


#: The character tokenizer's special ids, in both towers' configs.
TOKENIZER_IDS = {"bos_token_id": BOS_TOKEN_ID, "eos_token_id": EOS_TOKEN_ID, "pad_token_id": EOS_TOKEN_ID}


def _tower_configs(spec: WorldSpec, text_length: int) -> tuple[dict, dict]:
    """The world model's text and vision tower sizes (either family), with the character tokenizer's ids."""
    text = dict(vocab_size=VOCAB_SIZE, hidden_size=spec.text_width, intermediate_size=4 * spec.text_width,
                num_hidden_layers=spec.text_layers, num_attention_heads=spec.heads,
                max_position_embeddings=text_length, **TOKENIZER_IDS)
    vision = dict(image_size=spec.image_size, patch_size=spec.patch_size, hidden_size=spec.vision_width,
                  intermediate_size=4 * spec.vision_width, num_hidden_layers=spec.vision_layers,
                  num_attention_heads=spec.heads)
    return text, vision


def make_clip_config(spec: WorldSpec):
    """The ``CLIPConfig`` of the world's model (token ids of the character tokenizer)."""
    from transformers import CLIPConfig

    text, vision = _tower_configs(spec, MAX_TEXT_LENGTH)
    return CLIPConfig(text_config=dict(text, projection_dim=spec.projection_dim),
                      vision_config=dict(vision, projection_dim=spec.projection_dim),
                      projection_dim=spec.projection_dim, **TOKENIZER_IDS)


def make_siglip_config(spec: WorldSpec):
    """The ``SiglipConfig`` of the world's SigLIP: the CLIP's widths and depths, 64 text positions (SigLIP
    pads its prompts to 64 tokens), the text head projecting to the vision width (the joint space)."""
    from ..backbones.siglip import TEXT_LENGTH, SiglipBackbone

    text, vision = _tower_configs(spec, TEXT_LENGTH)
    return SiglipBackbone.config_class()(text_config=dict(text, projection_size=spec.vision_width),
                                         vision_config=vision)


#: SigLIP's initial logit scale (log 10) and bias (-10), as in the SigLIP paper (section 3.2).
SIGLIP_INIT = (math.log(10.0), -10.0)


def new_model(spec: WorldSpec):
    """A freshly initialized model of ``spec.backbone``'s family (a SigLIP's scale and bias set to
    ``SIGLIP_INIT``); the seed is the caller's (``torch.manual_seed``)."""
    import torch

    if spec.backbone == "siglip":
        from ..backbones.siglip import SiglipBackbone

        model = SiglipBackbone.model_class()(make_siglip_config(spec))
        with torch.no_grad():
            model.logit_scale.fill_(SIGLIP_INIT[0])
            model.logit_bias.fill_(SIGLIP_INIT[1])
        return model
    from ..backbones.clip import CLIPBackbone

    return CLIPBackbone.model_class()(make_clip_config(spec))


def _attribute_codes(objects: Sequence[ObjectSpec]) -> np.ndarray:
    """(N, 4) integer codes of the attributes of each object."""
    return np.array([[VALUES[a].index(getattr(o, a)) for a in ATTRIBUTES] for o in objects], np.int64)


def _caption_codes(named: dict[str, str]) -> list[int]:
    """Attribute codes of a caption, -1 where the caption does not say."""
    return [VALUES[a].index(named[a]) if a in named else -1 for a in ATTRIBUTES]


def _positives(image_codes, caption_codes):
    """(images, captions) 0/1: caption j fits image i when every attribute it names matches."""
    said = caption_codes[None, :, :] >= 0
    agree = caption_codes[None, :, :] == image_codes[:, None, :]
    return (agree | ~said).all(-1).float()


def sigmoid_loss(logits, image_codes=None, caption_codes=None):
    """SigLIP's sigmoid loss over a batch of ``logits = t cos + b`` (images x captions); multi-positive
    when codes are given.

    ``-(1/B) * sum_ij log sigmoid(l_ij * logits_ij)`` with ``l_ij = +1`` where caption j fits image i
    (every attribute it names matches; the diagonal always does), ``-1`` elsewhere. Without codes the
    labels are +1 on the diagonal only: :func:`tgazsr.losses.sigmoid_contrastive`.
    """
    import torch
    import torch.nn.functional as F

    if image_codes is None:
        positive = torch.eye(logits.shape[0], device=logits.device)
    else:
        positive = _positives(image_codes, caption_codes)
    return -F.logsigmoid((2 * positive - 1) * logits).sum() / logits.shape[0]


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
    positive = _positives(image_codes, caption_codes)
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


def _attribute_contrast(model, image_embeds, image_codes, prompts, paraphrases, tokenizer, sigmoid=False):
    """Two contrastive terms against curated captions, averaged over the four attributes
    (``sigmoid``: as SigLIP's sigmoid terms on ``t cos + b``, for the world's SigLIP; else softmax).

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
    tokens = _tokenize(tokenizer, texts, sigmoid)
    text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    text = F.normalize(text if isinstance(text, torch.Tensor) else text.pooler_output, dim=-1)
    half = len(texts) // 2
    first, second = text[:half], text[half:]
    scale = model.logit_scale.exp()
    loss, start = 0.0, 0
    for k, a in enumerate(ATTRIBUTES):
        n = len(VALUES[a])
        block = slice(start, start + n)
        image_logits = scale * image_embeds @ first[block].t()
        text_logits = scale * first[block] @ second[block].t()
        target = torch.arange(n)
        if sigmoid:
            bias = model.logit_bias
            own = F.one_hot(image_codes[:, k], n).float()
            loss = loss + -F.logsigmoid((2 * own - 1) * (image_logits + bias)).sum() / len(image_logits)
            loss = loss + sigmoid_loss(text_logits + bias)
        else:
            loss = loss + F.cross_entropy(image_logits, image_codes[:, k])
            loss = loss + (F.cross_entropy(text_logits, target) + F.cross_entropy(text_logits.t(), target)) / 2
        start += n
    return loss / len(ATTRIBUTES)


def _tokenize(tokenizer, texts, siglip: bool):
    """CLIP: padded to the longest text of the batch. SigLIP: to 64 tokens, as SigLIP's text tower
    reads its last position (the backbone's ``tokenize``, as training and the pipeline pad)."""
    if siglip:
        from ..backbones.siglip import SiglipBackbone

        return SiglipBackbone.tokenize(tokenizer, texts)
    return tokenizer(texts, padding=True, truncation=True, return_tensors="pt")


def pretrain_model(images: np.ndarray, objects: Sequence[ObjectSpec], spec: WorldSpec, seed: int = 0,
                   tokenizer=None):
    """The world's model of ``spec.backbone``'s family, pretrained: ``pretrain_clip`` or ``pretrain_siglip``."""
    if spec.backbone == "siglip":
        return pretrain_siglip(images, objects, spec, seed=seed, tokenizer=tokenizer)
    return pretrain_clip(images, objects, spec, seed=seed, tokenizer=tokenizer)


def pretrain_clip(
    images: np.ndarray, objects: Sequence[ObjectSpec], spec: WorldSpec, seed: int = 0, tokenizer=None
):
    """Contrastive pretraining of a fresh CLIP on the world's images.

    Every epoch draws a new caption for every image (the seed fixes which), so the model sees
    many phrasings of each object. Returns ``(model, info)``, ``info`` holding the
    wall time of the optimization loop alone and the last losses.
    """
    if spec.backbone != "clip":
        raise ValueError(f"pretrain_clip got a {spec.backbone} spec: call pretrain_model.")
    return _pretrain(images, objects, spec, seed, tokenizer or make_tokenizer())


def pretrain_siglip(
    images: np.ndarray, objects: Sequence[ObjectSpec], spec: WorldSpec, seed: int = 0, tokenizer=None
):
    """Pretraining of a fresh SigLIP on the world's images with SigLIP's sigmoid loss (the module's
    docstring says what changes from the CLIP's). Returns ``(model, info)`` as ``pretrain_clip``."""
    if spec.backbone != "siglip":
        raise ValueError(f"pretrain_siglip got a {spec.backbone} spec: call pretrain_model.")
    from ..backbones.siglip import TEXT_LENGTH

    return _pretrain(images, objects, spec, seed, tokenizer or make_tokenizer(TEXT_LENGTH))


def _pretrain(images, objects, spec: WorldSpec, seed: int, tokenizer):
    import torch

    from ..modeling import CLIP_MEAN, CLIP_STD

    siglip = spec.backbone == "siglip"
    title = "SigLIP" if siglip else "CLIP"
    torch.manual_seed(seed)
    model = new_model(spec)
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
    mean = torch.tensor((0.5, 0.5, 0.5) if siglip else CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor((0.5, 0.5, 0.5) if siglip else CLIP_STD).view(1, 3, 1, 1)
    pair_loss = sigmoid_loss if siglip else contrastive_loss
    image_codes = torch.from_numpy(_attribute_codes(objects))
    max_logit_scale = math.log(100.0)
    losses: list[float] = []

    with torch_threads(spec.threads):
        threads = torch.get_num_threads()
        logger.info("pretraining on %d thread(s)", threads)
        start, cpu_start = time.perf_counter(), time.process_time()
        bar = progress(range(total), f"pretraining {title}")
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
                tokens = _tokenize(tokenizer, texts, siglip)
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
                    loss = pair_loss(out.logits_per_image, batch_codes, torch.tensor(codes))
                else:
                    loss = pair_loss(out.logits_per_image)
                if spec.attribute_loss_weight > 0:
                    loss = loss + spec.attribute_loss_weight * _attribute_contrast(
                        model,
                        out.image_embeds,
                        batch_codes,
                        attribute_prompts(caption_rng),
                        attribute_prompts(caption_rng),
                        tokenizer,
                        sigmoid=siglip,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, max_logit_scale)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"pretraining the world's {title}: the loss is {loss.item()} at step "
                                             f"{len(losses)}; nothing was saved. Build it again with another --seed.")
                losses.append(loss.item())
                if hasattr(bar, "set_postfix") and len(losses) % 10 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if not losses:
            raise ValueError(f"The world's spec makes no pretraining step (epochs {spec.epochs}): set epochs >= 1.")
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
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-10:])),
        "logit_scale": float(model.logit_scale.exp().item()),
    }
    if siglip:
        info |= {"loss": "sigmoid", "logit_bias": float(model.logit_bias.item())}
    logger.info("pretrained %s: %d steps in %.1f s, loss %.3f", title, total, seconds, info["final_loss"])
    return model, info


def save_model(model, directory: str | os.PathLike, spec: WorldSpec, tokenizer=None) -> None:
    """A plain model directory (the backbone's class): safetensors weights, tokenizer, image processor
    (a SigLIP's: its 64-token tokenizer and SigLIP's image processor, saved with ``SiglipProcessor``)."""
    if spec.backbone == "siglip":
        from ..backbones.siglip import TEXT_LENGTH, SiglipBackbone

        tokenizer = tokenizer or make_tokenizer(TEXT_LENGTH)
        processor = SiglipBackbone.processor_class()(image_processor=make_siglip_image_processor(spec.image_size),
                                                     tokenizer=tokenizer)
    else:
        from transformers import CLIPProcessor

        tokenizer = tokenizer or make_tokenizer()
        processor = CLIPProcessor(image_processor=make_image_processor(spec.image_size), tokenizer=tokenizer)
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
