"""Build a random open_clip CLIP and record its features, for tests/test_open_clip.py (run as a script).

    python tests/open_clip_reference.py MODEL_CFG.json INPUTS.pt OUT.pt

open_clip imports torchvision for its image transforms at import time. torchvision has no CPU
build to match the pinned torch, so this script, in its own process, gives open_clip a stand-in
module whose transforms raise if used: only the model classes run here (``open_clip.model.CLIP``,
its ``encode_image`` and ``encode_text``), never a transform. Writes the model's state dict and its
image and text features for the given normalized images and token ids.
"""

from __future__ import annotations

import enum
import importlib.machinery
import json
import sys
import types

import torch


def _torchvision_stand_in() -> None:
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops",
             "torchvision.ops.misc")
    modules = {name: types.ModuleType(name) for name in names}
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision is not installed: open_clip's image transforms are not available here")

    transforms = modules["torchvision.transforms"]
    for name in ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "Resize", "CenterCrop", "ColorJitter",
                 "Grayscale", "RandomApply", "RandomGrayscale"):
        setattr(transforms, name, type(name, (Unavailable,), {}))
    transforms.InterpolationMode = enum.Enum("InterpolationMode", {"NEAREST": "nearest", "BILINEAR": "bilinear",
                                                                   "BICUBIC": "bicubic", "LANCZOS": "lanczos"})
    modules["torchvision.ops.misc"].FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})
    modules["torchvision"].__version__ = "stand-in"
    modules["torchvision"].transforms, modules["torchvision"].ops = transforms, modules["torchvision.ops"]
    transforms.functional = modules["torchvision.transforms.functional"]
    modules["torchvision.ops"].misc = modules["torchvision.ops.misc"]
    sys.modules.update(modules)


def main(model_cfg_path: str, inputs_path: str, out_path: str) -> None:
    _torchvision_stand_in()
    import open_clip
    from open_clip.model import CLIP

    model_cfg = json.loads(open(model_cfg_path).read())
    torch.manual_seed(model_cfg.pop("seed", 0))
    model = CLIP(**model_cfg).eval()
    with torch.no_grad():  # open_clip's init leaves LayerNorms at 1/0 and some weights tiny: move every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    inputs = torch.load(inputs_path, weights_only=True)
    with torch.no_grad():
        image = model.encode_image(inputs["pixels"])
        text = model.encode_text(inputs["ids"])
    torch.save({"state_dict": model.state_dict(), "image": image, "text": text,
                "open_clip_version": open_clip.__version__}, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
