"""Convert OpenAI-CLIP and open_clip checkpoints into plain ``CLIPModel`` directories, and
open_clip SigLIPs into plain ``SiglipModel`` ones (:mod:`tgazsr.convert.siglip` holds their table).

    tgazsr convert hf-hub:chs20/fare2-clip outputs/fare2-clip
    tgazsr convert fare2-clip outputs/fare2-clip                       (a name of the zoo, zoo.yaml)
    tgazsr convert runs/tga_zsr/checkpoint.pth.tar outputs/tga-zsr --base_model openai/clip-vit-base-patch32
    tgazsr convert --list_zoo

Most published robust CLIPs are not ``transformers`` checkpoints: the TeCoA, PMG-AFT and TGA-ZSR
code saves ``.pth.tar`` files of OpenAI's CLIP (``clip.load``), RobustVLM releases ``.pt`` files of
the vision tower, and the FARE / TeCoA models on the Hub are open_clip folders
(``open_clip_config.json`` + ``open_clip_pytorch_model.bin`` or ``open_clip_model.safetensors``).
Their state dicts map onto ``CLIPModel`` one to one:

=============================================  ==================================================
OpenAI / open_clip                             CLIPModel
=============================================  ==================================================
``visual.conv1.weight``                        ``vision_model.embeddings.patch_embedding.weight``
``visual.class_embedding``                     ``vision_model.embeddings.class_embedding``
``visual.positional_embedding``                ``vision_model.embeddings.position_embedding.weight``
``visual.ln_pre`` / ``visual.ln_post``         ``vision_model.pre_layrnorm`` / ``.post_layernorm``
``visual.proj`` (width x embed)                ``visual_projection.weight`` (transposed)
``token_embedding.weight``                     ``text_model.embeddings.token_embedding.weight``
``positional_embedding``                       ``text_model.embeddings.position_embedding.weight``
``ln_final``                                   ``text_model.final_layer_norm``
``text_projection`` (width x embed)            ``text_projection.weight`` (transposed)
``logit_scale``                                ``logit_scale``
``*.resblocks.N.attn.in_proj_weight/bias``     ``*.layers.N.self_attn.{q,k,v}_proj`` (split in 3)
``*.resblocks.N.attn.out_proj``                ``*.layers.N.self_attn.out_proj``
``*.resblocks.N.ln_1`` / ``ln_2``              ``*.layers.N.layer_norm1`` / ``layer_norm2``
``*.resblocks.N.mlp.c_fc`` / ``c_proj``        ``*.layers.N.mlp.fc1`` / ``fc2``
=============================================  ==================================================

The architecture is read from the tensor shapes, as OpenAI's ``build_model`` reads it: the vision
width from ``conv1``, the patch size from its kernel, the image size from the number of positions,
the layer counts from the block indices, the text width, context length and vocabulary from the
text tensors, the embedding size from the projections; heads are ``width // 64`` unless an
``open_clip_config.json`` says otherwise (``heads``, ``head_width``). Every source tensor must be
used and every ``CLIPModel`` weight filled (the ``position_ids`` buffers are not weights), so a
checkpoint with parts a ``CLIPModel`` cannot hold (layer scale, attentional pooling, a visual
prompt) is refused with the names of those parts, never loaded half.

Two facts no tensor shows, and how they are decided:

- **the activation**: OpenAI's CLIP (and every model fine-tuned from it: TeCoA, PMG-AFT, FARE,
  TGA-ZSR) uses QuickGELU, most open_clip models trained on LAION / DataComp use GELU. It comes
  from ``quick_gelu=`` (``--quick_gelu true|false``), else the zoo entry, else the open_clip config
  (``quick_gelu``, open_clip's default False), else the base model's vision tower; with none of
  them it is an error.
- **text pooling**: OpenAI / open_clip pool the text at the end-of-text token, id 49407, so the
  converted text config has ``eos_token_id=49407`` and ``bos_token_id=49406`` (transformers then
  pools at the first 49407; with the legacy ``eos_token_id=2`` it would pool at ``argmax(ids)``).
  ``pad_token_id`` is 0, open_clip's ``pad_id``; the padding never reaches the pooled token (the
  text attention is causal and the pooled token is the first end-of-text token).

A checkpoint of the vision tower alone (TGA-ZSR's ``vision_encoder_state_dict``, RobustVLM's ``.pt``
files, ``visual.*`` keys only) takes its text tower, text projection, logit scale, tokenizer and
image normalization from ``base_model``: the CLIP it was fine-tuned from.

Checkpoint files are read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
numpy scalars/arrays, never pickled code. Conversions for ``--model_name_or_path`` are cached by
:func:`load_model_or_convert` in ``$TGAZSR_HOME/converted``.

The modules, one concern each: ``reading`` (checkpoint files and open_clip folders), ``architecture``
(sizes from the shapes, the tower configs), ``keys`` (the key mapping), ``model`` (the CLIPModel and its
strict checks), ``sources`` (a local path, ``hf-hub:``, a zoo name), ``tokenizer`` (the tokenizer and
the image processor), ``writing`` (the output folder), ``cache`` (:func:`load_model_or_convert`),
``cli`` (``tgazsr convert``), ``zoo`` (``zoo.yaml``, the published robust CLIPs) and ``siglip``
(open_clip's SigLIP: its sizes, key mapping and strict SiglipModel).
"""

from ..modeling import CLIP_MEAN, CLIP_STD
from .architecture import UNSUPPORTED_TEXT_OPTIONS, UNSUPPORTED_VISION_OPTIONS, infer_architecture
from .base import (
    BOT_TOKEN_ID,
    CHECKPOINT_SUFFIXES,
    CONVERTER_VERSION,
    EOT_TOKEN_ID,
    HUB_PREFIX,
    LAYER_NORM_EPS,
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    PAD_TOKEN_ID,
    TOKENIZER_FILES,
    ConversionError,
)
from .cache import default_cache_dir, load_model_or_convert, needs_conversion
from .cli import ConvertArguments, main
from .model import convert_state_dict
from .reading import CONTAINERS, METADATA_KEYS, LoadedCheckpoint, load_checkpoint, normalize_state_dict
from .writing import convert
from .zoo import ZOO, ZOO_FILE, Reported, ThreatModel, ZooEntry, ZooFileError, read_zoo, resolve_zoo, zoo_entry, \
    zoo_table

__all__ = [
    "BOT_TOKEN_ID", "CHECKPOINT_SUFFIXES", "CLIP_MEAN", "CLIP_STD", "CONTAINERS", "CONVERTER_VERSION", "EOT_TOKEN_ID",
    "HUB_PREFIX", "LAYER_NORM_EPS", "METADATA_KEYS", "OPEN_CLIP_CONFIG", "OPEN_CLIP_WEIGHTS", "PAD_TOKEN_ID",
    "TOKENIZER_FILES", "UNSUPPORTED_TEXT_OPTIONS", "UNSUPPORTED_VISION_OPTIONS", "ZOO", "ZOO_FILE", "ConversionError",
    "ConvertArguments", "LoadedCheckpoint", "Reported", "ThreatModel", "ZooEntry", "ZooFileError", "convert",
    "convert_state_dict", "default_cache_dir", "infer_architecture", "load_checkpoint", "load_model_or_convert",
    "main", "needs_conversion", "normalize_state_dict", "read_zoo", "resolve_zoo", "zoo_entry", "zoo_table",
]
