"""What the parts of the converter share: its error, the token ids and file names of OpenAI's and
open_clip's formats, and the public form of a name."""

from __future__ import annotations

import os

from ..errors import UserError

#: Bumped when the converter's output changes: part of the cache key of load_model_or_convert.
CONVERTER_VERSION = 2
#: OpenAI's BPE tokenizer: <|startoftext|> and <|endoftext|> (the token the text tower pools at).
BOT_TOKEN_ID = 49406
EOT_TOKEN_ID = 49407
#: open_clip's pad_id (CLIPTextCfg.pad_id); padding follows the pooled token, so its value never matters.
PAD_TOKEN_ID = 0
#: nn.LayerNorm's default, which OpenAI's and open_clip's towers use.
LAYER_NORM_EPS = 1e-5

OPEN_CLIP_CONFIG = "open_clip_config.json"
#: open_clip's own names for the weights of a Hub folder, in its order of preference.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".bin", ".safetensors")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model")  # BPE, or sentencepiece (SigLIP)
HUB_PREFIX = "hf-hub:"


class ConversionError(ValueError, UserError):
    """A checkpoint that cannot be converted as given. The message says why and what to pass."""


def public(name) -> str | None:
    """A name fit for files that may be shared: a local path becomes its last component."""
    if name is None:
        return None
    name = str(getattr(name, "name_or_path", None) or name)
    if os.path.exists(os.path.expanduser(name)):
        return os.path.basename(os.path.normpath(name))
    return name
