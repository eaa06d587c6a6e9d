"""The world's pretrained CLIP, shipped with the package so that a first run need not pretrain it.

Pretraining the world's CLIP is the longest part of a first run on a CPU (minutes), and it is the
same computation every time: the world is deterministic in its seed. So the package ships the
weights that ``tgazsr world`` pretrained for the default spec and seed (a few MB of safetensors in
``tgazsr/world/shipped/seed<N>/``) together with what that pretraining reported. A build uses them
when the spec's fingerprint and the seed match, says so in its log, and writes them into the world
as the pretraining would have (``save_model``: weights, tokenizer, image processor). ``tgazsr
world --pretrain`` pretrains from scratch instead, and the slow test
``test_the_shipped_model_is_what_pretraining_gives`` checks that a fresh pretraining reaches the
shipped model's accuracy.

Only the CLIP world's model is shipped. A SigLIP world (``tgazsr world --backbone siglip``) always
pretrains: its spec's fingerprint includes the backbone (``WorldSpec.fingerprint``), so no shipped
record matches it.

To ship the model of a new spec (after a change of the world): build it with ``tgazsr world
--pretrain --root R`` and run ``python -m tgazsr.world.shipped R`` (it copies R's model weights and
pretraining record here).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .spec import WORLD_VERSION, WorldSpec

SHIPPED_DIR = Path(__file__).with_name("shipped")
WEIGHTS = "model.safetensors"
RECORD = "shipped.json"


def shipped_folder(seed: int) -> Path:
    return SHIPPED_DIR / f"seed{seed}"


def shipped_record(spec: WorldSpec, seed: int) -> dict | None:
    """The record of the shipped model for ``spec`` and ``seed``, or None when none matches (another
    spec, another seed or another world version: the build then pretrains)."""
    folder = shipped_folder(seed)
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not (folder / WEIGHTS).is_file():
        return None
    if record.get("fingerprint") != spec.fingerprint() or record.get("version") != WORLD_VERSION:
        return None
    return record


def load_shipped(spec: WorldSpec, seed: int):
    """The shipped pretrained CLIP for ``spec`` and ``seed`` as a model, loaded strictly (every tensor
    its config declares, with its shape), and its record; None when no shipped model matches."""
    record = shipped_record(spec, seed)
    if record is None:
        return None
    from safetensors.torch import load_file

    from ..backbones.clip import CLIPBackbone
    from ..errors import ModelFolderError
    from ..model_checks import state_dict_problems, strict_loading_error
    from .pretraining import make_clip_config

    model = CLIPBackbone.model_class()(make_clip_config(spec))
    path = shipped_folder(seed) / WEIGHTS
    weights = load_file(str(path))
    problems = state_dict_problems(model.state_dict(), weights)
    if problems:
        raise strict_loading_error(str(path), problems, "Reinstall tgazsr, or build the world with --pretrain.",
                                   ModelFolderError)
    model.load_state_dict(weights, strict=True)
    model.eval()
    return model, record


def ship(model_dir: str, spec: WorldSpec, seed: int, destination: Path | None = None) -> Path:
    """Copy the pretrained weights and the pretraining record of a built world's ``model_dir`` into
    the package (``destination`` defaults to ``shipped/seed<seed>``)."""
    folder = destination or shipped_folder(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(os.path.join(model_dir, "pretraining.json")) as f:
        pretraining = json.load(f)
    if pretraining.get("shipped"):
        raise ValueError(f"{model_dir} holds a shipped model, not a pretrained one: build the world with --pretrain.")
    shutil.copyfile(os.path.join(model_dir, WEIGHTS), folder / WEIGHTS)
    record = {"fingerprint": spec.fingerprint(), "version": WORLD_VERSION, "seed": seed, "pretraining": pretraining}
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m tgazsr.world.shipped ROOT [--seed N]``: ship the model of the world at ROOT."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tgazsr.world.shipped", description=main.__doc__)
    parser.add_argument("root", help="A world built with `tgazsr world --pretrain --root ROOT`.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = ship(os.path.join(args.root, "model"), WorldSpec(), args.seed)
    print(f"shipped {folder / WEIGHTS} ({(folder / WEIGHTS).stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
