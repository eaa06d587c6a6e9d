"""The world's character-level CLIP tokenizer and its image processors, built offline.

The tokenizer is a ``CLIPTokenizer`` over the 256 byte-level symbols, their ``</w>`` (end of
word) forms, ``<|startoftext|>`` (512) and ``<|endoftext|>`` (513), with no merges: one token
per character. The model's text config carries these real ids (bos 512, eos = pad 513):
transformers pools the text tower at ``argmax(input_ids)`` only for the legacy
``eos_token_id == 2``, and at the first EOS token otherwise, which is the right place here.

The world's SigLIP uses the same tokenizer with ``model_max_length`` 64: SigLIP's prompts are padded
to 64 tokens (``padding="max_length"``) and its text tower reads the last position, a pad (= EOS)
token, as the real SigLIP tokenizer pads with its EOS token. Every caption and prompt of the world
fits in 64 tokens (``tests/test_world_siglip.py`` checks the longest).
"""

from __future__ import annotations

from PIL import Image

from .spec import IMAGE_SIZE

BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
BOS_TOKEN_ID, EOS_TOKEN_ID = 512, 513
VOCAB_SIZE = 514
MAX_TEXT_LENGTH = 77


def _byte_symbols() -> list[str]:
    """The 256 printable symbols that byte-level BPE uses for the bytes 0..255, in byte order."""
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # older/newer layouts: rebuild the standard table
        bytes_to_unicode = None
    if bytes_to_unicode is not None:
        table = bytes_to_unicode()
        return [table[b] for b in range(256)]
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def character_vocab() -> dict[str, int]:
    """256 byte symbols (ids 0..255), their ``</w>`` forms (256..511), BOS 512, EOS 513."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab[BOS_TOKEN] = BOS_TOKEN_ID
    vocab[EOS_TOKEN] = EOS_TOKEN_ID
    return vocab


def make_tokenizer(max_length: int = MAX_TEXT_LENGTH):
    """A character-level ``CLIPTokenizer`` (byte-level symbols, no merges), built offline;
    ``max_length`` is its ``model_max_length`` (77 for CLIP, 64 for the world's SigLIP).

    In transformers 5 the constructor takes the vocabulary and merges themselves
    (``vocab=``, ``merges=``); the old ``vocab_file=``/``merges_file=`` keywords are
    silently ignored there, which would leave a 3-token vocabulary.
    """
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(vocab=character_vocab(), merges=[], model_max_length=max_length)
    if not (
        len(tokenizer) == VOCAB_SIZE
        and tokenizer.eos_token_id == EOS_TOKEN_ID
        and tokenizer.bos_token_id == BOS_TOKEN_ID
    ):
        raise RuntimeError(
            f"The character tokenizer came out with {len(tokenizer)} tokens (bos {tokenizer.bos_token_id}, "
            f"eos {tokenizer.eos_token_id}); expected {VOCAB_SIZE} (bos {BOS_TOKEN_ID}, eos {EOS_TOKEN_ID})."
        )
    return tokenizer


def make_image_processor(size: int = IMAGE_SIZE):
    """``CLIPImageProcessor`` for the world's images: resize/crop to ``size``, CLIP mean/std."""
    from transformers import CLIPImageProcessor

    from ..modeling import CLIP_MEAN, CLIP_STD

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": size},
        resample=Image.BICUBIC,
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def make_siglip_image_processor(size: int = IMAGE_SIZE):
    """``SiglipImageProcessor`` for the world's images: resize to ``size`` x ``size``, SigLIP's mean = std = 0.5."""
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        resample=Image.BICUBIC,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )
