"""Build random open_clip CLIPs or SigLIPs and record their features, for the conversion tests (run as a script).

    python tests/open_clip_reference.py JOBS.json     # [{"model_cfg": ..., "inputs": ..., "out": ...}, ...]

A test module asks for all the references it uses at once (:func:`references`, a module fixture):
one process imports open_clip and builds every model, instead of one process per test.

open_clip imports torchvision for its image transforms at import time. torchvision has no CPU
build to match the pinned torch, so this script, in its own process, gives open_clip a stand-in
module whose transforms raise if used (timm, which builds a SigLIP's vision tower, imports its
datasets and transforms too): only the model classes run here (``open_clip.model.CLIP`` or
``CustomTextCLIP``, their ``encode_image`` and ``encode_text``), never a transform. Writes the
model's state dict and its image and text features for the given normalized images and token ids.
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import json
import sys
import types

from pathlib import Path

import torch

#: timm, for these references only (the README's install: pip install --no-deps --target .test_deps timm==1.0.31),
#: kept off the environment's path: accelerate's command line imports timm whenever it can find it, and timm
#: without torchvision fails to import, which would break `accelerate launch`.
TEST_DEPS = Path(__file__).resolve().parents[1] / ".test_deps"
TIMM_INSTALL = 'pip install --no-deps --target .test_deps "timm==1.0.31"'


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is not installed: open_clip's and timm's image transforms and datasets are "
                           "not available here")


class _StandIn(types.ModuleType):
    """A torchvision module whose every attribute is a class that raises when used."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Unavailable,), {})
        setattr(self, name, value)
        return value


INTERPOLATION = enum.Enum("InterpolationMode", {
    "NEAREST": "nearest", "NEAREST_EXACT": "nearest-exact", "BILINEAR": "bilinear", "BICUBIC": "bicubic",
    "BOX": "box", "HAMMING": "hamming", "LANCZOS": "lanczos"})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        if spec.name == "torchvision":
            module.__version__ = "stand-in"
        if spec.name in ("torchvision.transforms", "torchvision.transforms.functional"):
            module.InterpolationMode = INTERPOLATION  # read at import time by open_clip and timm
        return module

    def exec_module(self, module):
        pass


def _torchvision_stand_in() -> None:
    """Every ``torchvision[.x]`` import gives a stand-in module (model classes need none of it)."""
    sys.meta_path.insert(0, _StandInFinder())


def _build(model_cfg: dict):
    """open_clip's model for ``model_cfg``: ``CLIP``, or ``CustomTextCLIP`` for a SigLIP (a timm
    trunk). ``timm_overrides`` (a test's, not open_clip's) shrinks the named timm architecture:
    ``timm.create_model`` is called by open_clip as usual, with these sizes added."""
    from open_clip.model import CLIP, CustomTextCLIP

    overrides = model_cfg.pop("timm_overrides", None)
    if overrides:
        import timm

        create = timm.create_model
        timm.create_model = lambda name, **kwargs: create(name, **{**kwargs, **overrides})
    if model_cfg.pop("custom_text", False):
        return CustomTextCLIP(**model_cfg)
    return CLIP(**model_cfg)


def references(jobs: dict[str, tuple[dict, dict]], folder: Path, measured_s: float) -> dict[str, dict]:
    """open_clip's state dict and features (``state_dict``, ``image``, ``text``) for each job, by name:
    a job is (model_cfg, inputs), inputs ``{"pixels": ..., "ids": ...}``; all built in one process."""
    from timed_run import run_timed

    folder.mkdir(parents=True, exist_ok=True)
    listed = []
    for name, (model_cfg, inputs) in jobs.items():
        (folder / f"{name}.json").write_text(json.dumps(model_cfg))
        torch.save(inputs, folder / f"{name}.inputs.pt")
        listed.append({"model_cfg": str(folder / f"{name}.json"), "inputs": str(folder / f"{name}.inputs.pt"),
                       "out": str(folder / f"{name}.reference.pt")})
    (folder / "jobs.json").write_text(json.dumps(listed))
    done = run_timed([sys.executable, __file__, str(folder / "jobs.json")], measured_s=measured_s,
                     doing=f"open_clip's reference features of {len(jobs)} models ({', '.join(jobs)})")
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: torch.load(job["out"], weights_only=True) for name, job in zip(jobs, listed)}


def main(jobs_path: str) -> None:
    _torchvision_stand_in()
    if TEST_DEPS.is_dir():
        sys.path.insert(0, str(TEST_DEPS))
    import open_clip

    for job in json.loads(open(jobs_path).read()):
        reference(open_clip.__version__, job["model_cfg"], job["inputs"], job["out"])


def reference(version: str, model_cfg_path: str, inputs_path: str, out_path: str) -> None:
    model_cfg = json.loads(open(model_cfg_path).read())
    torch.manual_seed(model_cfg.pop("seed", 0))
    model = _build(model_cfg).eval()
    with torch.no_grad():  # open_clip's init leaves LayerNorms at 1/0 and some weights tiny: move every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    inputs = torch.load(inputs_path, weights_only=True)
    with torch.no_grad():
        image = model.encode_image(inputs["pixels"])
        text = model.encode_text(inputs["ids"])
    torch.save({"state_dict": model.state_dict(), "image": image, "text": text,
                "open_clip_version": version}, out_path)


if __name__ == "__main__":
    main(sys.argv[1])
