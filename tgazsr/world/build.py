"""Building the world on disk once, and finding it again.

Layout under ``root``:

- ``pretrain/``: ``DatasetDict({"train": ...})`` of image-caption pairs (``image``,
  ``caption`` and the four attribute columns);
- ``train/``: ``DatasetDict({"train": ...})``, the 48-class training set;
- ``eval/<set>/``: ``DatasetDict({"test": ...})`` per evaluation set, whose class names and
  prompts are the registry entry ``world_<set>`` (see :mod:`tgazsr.world.sets`);
- ``model/``: a CLIP (or, for a SigLIP world, a SigLIP; transformers, safetensors) with its
  tokenizer and image processor;
- ``WORLD_COMPLETE.json``: written last, with the spec's fingerprint.

Every part is written to a temporary directory and renamed into place, so a part that exists
is whole; a file lock beside the root keeps two processes from building the same world at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

from ..files import file_lock
from .sets import (
    EVAL_SETS,
    EVAL_SPLIT,
    HELD_OUT_SETS,
    TRAIN_SPLIT,
    build_eval_set,
    build_pretraining_set,
    build_train_set,
    eval_set,
    generate_pretraining,
)
from .spec import IMAGE_SIZE, WORLD_EPS, WORLD_VERSION, WorldSpec

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "WORLD_COMPLETE.json"


@dataclass
class WorldPaths:
    """Where a built world lives. ``eps`` is the world's attack budget in 1/255 units.

    ``eval`` maps each evaluation set's name (``"shapes"``) to its directory; ``held_out``
    names the sets that are never labels of the training set.
    """

    root: str
    model: str
    train: str
    pretrain: str
    eval: dict[str, str] = field(default_factory=dict)
    eps: float = WORLD_EPS
    image_size: int = IMAGE_SIZE
    held_out: tuple[str, ...] = HELD_OUT_SETS

    @classmethod
    def under(cls, root: str | os.PathLike, spec: WorldSpec) -> "WorldPaths":
        root = str(root)
        return cls(
            root=root,
            model=os.path.join(root, "model"),
            train=os.path.join(root, "train"),
            pretrain=os.path.join(root, "pretrain"),
            eval={name: os.path.join(root, "eval", name) for name in EVAL_SETS},
            eps=spec.eps,
            image_size=spec.image_size,
        )

    def eval_entries(self, names: Sequence[str] | None = None) -> list[str]:
        """``["world_shapes=/abs/path/eval/shapes", ...]``: registry name = local copy, the form the
        evaluation harness's ``datasets`` take. ``names`` (set names such as ``"shapes"`` or
        registry names such as ``"world_shapes"``) default to the held-out sets."""
        entries = []
        for name in self.held_out if names is None else names:
            es = eval_set(name)
            if es.name not in self.eval:
                from ..recipes import RecipeError

                raise RecipeError(f"This world has no evaluation set {es.name!r}: name one of {sorted(self.eval)}.")
            entries.append(f"{es.registry_name}={os.path.abspath(self.eval[es.name])}")
        return entries


def default_root(seed: int = 0, small: bool = False, backbone: str = "clip") -> str:
    """``$TGAZSR_HOME`` (or ``$XDG_CACHE_HOME/tgazsr``, ``~/.cache/tgazsr``) /
    world-<version>-seed<seed>[-siglip][-small]: a SigLIP world lives in its own root."""
    base = os.environ.get("TGAZSR_HOME")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "tgazsr")
    family = "" if backbone == "clip" else f"-{backbone}"
    return os.path.join(base, f"world-{WORLD_VERSION}-seed{seed}{family}" + ("-small" if small else ""))


def put_atomically(final: str, write) -> None:
    """Let ``write(tmp_dir)`` fill a temporary directory beside ``final``, then rename it."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(final)}-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the world is a shared cache
    try:
        write(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _save_split(ds, split: str):
    """A writer for ``put_atomically``: ``DatasetDict({split: ds}).save_to_disk(tmp)``."""
    import datasets

    return datasets.DatasetDict({split: ds}).save_to_disk


def is_complete(paths: WorldPaths, spec: WorldSpec) -> bool:
    """The world at ``paths`` was built whole from ``spec`` (marker with its fingerprint, every part)."""
    marker = os.path.join(paths.root, COMPLETE_MARKER)
    if not os.path.exists(marker):
        return False
    try:
        with open(marker) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    needed = [paths.model, paths.train, paths.pretrain, *paths.eval.values()]
    return info.get("fingerprint") == spec.fingerprint() and all(os.path.isdir(p) for p in needed)


def build_world(
    root: str | os.PathLike | None = None,
    seed: int = 0,
    small: bool = False,
    force: bool = False,
    spec: WorldSpec | None = None,
    pretrain: bool = False,
    backbone: str | None = None,
) -> WorldPaths:
    """Build (or reuse) the offline world and return where its parts are.

    ``root`` defaults to ``default_root(seed, small)``. Parts already on disk are reused
    (each part is written to a temporary directory and renamed into place, so a part that
    exists is whole); a completion marker is written last. A file lock beside the root keeps
    two processes from building the same world at once. ``force`` rebuilds everything.
    ``small`` builds the reduced unit-test world (seconds). ``backbone`` (``"clip"``, the default, or
    ``"siglip"``; or ``spec.backbone``) is the model's family: a SigLIP world is pretrained with SigLIP's
    sigmoid loss (:mod:`tgazsr.world.pretraining`) and lives in its own root. The model is the
    package's shipped pretrained CLIP when one matches the spec and seed (:mod:`tgazsr.world.shipped`;
    none is shipped for SigLIP), else pretrained here; ``pretrain`` pretrains it in any case.
    """
    from . import pretraining
    from .shipped import load_shipped, shipped_folder

    if spec is None:
        spec = WorldSpec.default(small, backbone or "clip")
    elif backbone is not None and backbone != spec.backbone:
        raise ValueError(f"build_world got backbone={backbone!r} and a spec of backbone {spec.backbone!r}: pass one.")
    root = os.path.abspath(str(root) if root is not None else default_root(seed, small, spec.backbone))
    paths = WorldPaths.under(root, spec)
    with file_lock(root.rstrip(os.sep) + ".lock"):
        if force and os.path.exists(root):
            logger.info("removing %s (force)", root)
            shutil.rmtree(root)
        if is_complete(paths, spec):
            logger.info("reusing the world at %s", root)
            return paths
        marker = os.path.join(root, COMPLETE_MARKER)
        if os.path.exists(marker):  # built from another spec: start again
            logger.info("world at %s was built with another spec; rebuilding", root)
            shutil.rmtree(root)
        os.makedirs(root, exist_ok=True)
        info: dict = {
            "fingerprint": spec.fingerprint(),
            "version": WORLD_VERSION,
            "seed": seed,
            "spec": dataclasses.asdict(spec),
        }

        if not os.path.isdir(paths.train):
            logger.info("building the training set")
            ds = build_train_set(spec.n_train_per_class, seed, spec.image_size)
            put_atomically(paths.train, _save_split(ds, TRAIN_SPLIT))
        for name, path in paths.eval.items():
            if os.path.isdir(path):
                continue
            logger.info("building the evaluation set %s", name)
            ds = build_eval_set(name, spec.n_eval, seed, spec.image_size)
            put_atomically(path, _save_split(ds, EVAL_SPLIT))

        need_pretrain = not os.path.isdir(paths.pretrain)
        need_model = not os.path.isdir(paths.model)
        if need_pretrain or need_model:
            images, objects, captions = generate_pretraining(spec.n_pretrain, seed, spec.image_size)
            if need_pretrain:
                ds = build_pretraining_set(images, objects, captions)
                put_atomically(paths.pretrain, _save_split(ds, TRAIN_SPLIT))
            if need_model:
                shipped = None if pretrain else load_shipped(spec, seed)
                if shipped is not None:
                    model, record = shipped
                    train_info = {**record["pretraining"], "shipped": True}
                    logger.info("the world's CLIP: the shipped pretrained model (%s; --pretrain pretrains it here)",
                                shipped_folder(seed))
                else:
                    logger.info("the world's %s: pretraining %s", spec.backbone, "(--pretrain)" if pretrain else
                                "(no shipped model for this spec and seed)")
                    model, train_info = pretraining.pretrain_model(images, objects, spec, seed=seed)
                info["pretraining"] = train_info

                def write_model(tmp):
                    pretraining.save_model(model, tmp, spec)
                    with open(os.path.join(tmp, "pretraining.json"), "w") as f:
                        json.dump(train_info, f, indent=2)

                put_atomically(paths.model, write_model)
        with open(marker + ".tmp", "w") as f:
            json.dump(info, f, indent=2)
        os.replace(marker + ".tmp", marker)
    return paths
