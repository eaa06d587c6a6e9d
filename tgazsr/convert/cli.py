"""``tgazsr convert SOURCE OUTPUT_DIR`` (also ``python -m tgazsr.convert``) and ``--list_zoo``."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Sequence

from ..limits import setting
from .writing import convert
from .zoo import zoo_table

@dataclass
class ConvertArguments:
    """tgazsr convert SOURCE OUTPUT_DIR [--base_model M] [--tokenizer T] [--quick_gelu true|false]

    A CLIP (OpenAI's or open_clip's) becomes a CLIPModel directory, an open_clip SigLIP a SiglipModel one."""

    source: str | None = field(default=None, metadata={
        "help": "What to convert (also the first positional argument): a checkpoint file (.pth, .pth.tar, .pt, .bin, "
                ".safetensors), an open_clip folder, hf-hub:ORG/NAME, or a zoo name (--list_zoo)."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where to write the CLIPModel / SiglipModel directory (also the second positional argument)."})
    base_model: str | None = field(default=None, metadata={
        "help": "The CLIP the checkpoint was fine-tuned from (CLIPModel folder or Hub id): the text tower of a "
                "vision-only checkpoint, and the tokenizer."})
    tokenizer: str | None = field(default=None, metadata={
        "help": "Where the tokenizer comes from (default: --base_model, else the source folder's)."})
    quick_gelu: bool | None = field(default=None, metadata={
        "help": "QuickGELU (OpenAI's CLIP and models fine-tuned from it) or GELU. Default: the zoo entry, the "
                "open_clip config, or the base model; required when none says."})
    vision_heads: int | None = setting(None, "The vision tower's attention heads, where the rule does not give them "
                                       "(a CLIP: width // 64; an open_clip SigLIP: its timm model name).", ge=1)
    text_heads: int | None = setting(None, "The text tower's attention heads, where neither width // 64 nor "
                                     "open_clip_config.json gives them.", ge=1)
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a non-empty output_dir."})
    list_zoo: bool = field(default=False, metadata={"help": "Print the zoo of published robust CLIPs and exit."})


def main(argv: Sequence[str] | None = None) -> int:
    from ..recipes import RecipeError, parse_recipe

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    positional = []
    while argv and not argv[0].startswith("-") and not argv[0].endswith((".yaml", ".yml")):
        positional.append(argv.pop(0))
    if len(positional) > 2:
        raise RecipeError(f"tgazsr convert takes SOURCE and OUTPUT_DIR, got {len(positional)} positional arguments: "
                          f"{positional}.")
    given = [f for name, value in zip(("--source", "--output_dir"), positional) for f in (name, value)]
    (args,) = parse_recipe((ConvertArguments,), given + argv)
    if args.list_zoo:
        print(zoo_table())
        return 0
    if not args.source or not args.output_dir:
        raise RecipeError("Pass what to convert and where: tgazsr convert SOURCE OUTPUT_DIR (e.g. tgazsr convert "
                          "fare2-clip outputs/fare2-clip). tgazsr convert --list_zoo lists the published robust CLIPs.")
    out = convert(args.source, args.output_dir, base_model=args.base_model, tokenizer=args.tokenizer,
                  quick_gelu=args.quick_gelu, overwrite=args.overwrite_output_dir, vision_heads=args.vision_heads,
                  text_heads=args.text_heads)
    print(out)
    return 0
