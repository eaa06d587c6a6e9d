"""The dataset boundary: a dataset is checked as a classification task before it is used.

:func:`check_task` is the one check that training's data loading
(``tgazsr.data.loading.prepare_classification_data``) and evaluation's dataset preparation
(``tgazsr.evaluation.datasets.prepare_dataset``, registry and local entries alike) run on the data
they are about to use, after its class names are known and before an image is scored or trained on:

- at least one image, and at least two classes (with one class every prediction is right: the
  dataset would score 100% clean and robust whatever the model);
- class names distinct once cleaned for the prompt (``tgazsr.data.registry.clean_class_name``:
  lowercase, ``_-/`` to spaces): two classes with one name get one prompt and cannot be told
  apart. (Names that differ but collide once tokenized and truncated are found where the prompts
  are encoded: ``tgazsr.modeling.check_tokenizer``, a ``PromptError``.);
- labels of integer type (a ``ClassLabel``, an integer ``Value``, or a boolean one: 0 and 1), none missing, all within
  ``[0, number of classes)`` (of the label map's ids, where the data's ids are mapped);
- the image column holding images (an ``Image`` feature, image bytes, or paths of files).

Every failure is one :class:`TaskError` naming the dataset and the fix. :func:`template_problem`
is the check of one prompt template (exactly one ``{}``, or none for a fixed per-class prompt), run
where templates are read: benchmark files, template files, a local dataset's metadata.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

from .errors import DataError

__all__ = ["TaskError", "check_task", "template_problem", "check_templates"]


class TaskError(DataError):
    """A dataset that is not a usable classification task; the message names it and the fix."""


def _shown(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(repr(n) for n in names[:limit]) + (", ..." if len(names) > limit else "")


def _label_kind_problem(feature) -> str | None:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return None
    dtype = getattr(feature, "dtype", None)
    if isinstance(feature, datasets.Value) and dtype and (dtype.startswith(("int", "uint")) or dtype == "bool"):
        return None
    return str(dtype or type(feature).__name__)


def _image_column_problem(ds, image_col: str) -> str | None:
    import datasets

    feature = ds.features.get(image_col)
    if isinstance(feature, datasets.Image):
        return None
    if isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary"):
        return None
    if isinstance(feature, dict) and {"bytes", "path"} <= set(feature):
        return None
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string") and len(ds):
        first = next((v for v in ds.select(range(min(len(ds), 8)))[image_col] if v), None)
        if first is not None and os.path.isfile(os.path.expanduser(str(first))):
            return None  # paths of image files
        return f"strings such as {str(first)[:60]!r}, not paths of image files"
    return f"{getattr(feature, 'dtype', None) or type(feature).__name__} values"


def check_task(source: str, ds, image_col: str, label_col: str, class_names: Sequence[str],
               raw_names: Sequence[str] | None = None, label_map: Sequence[int] | None = None) -> None:
    """Raise a :class:`TaskError` naming ``source`` when ``ds`` (its ``image_col`` and
    ``label_col``, its classes ``class_names`` as the prompts use them, ``raw_names`` as given)
    is not a classification task the evaluation's numbers can mean something on."""
    names = list(class_names)
    if len(ds) == 0:
        raise TaskError(f"{source} holds no images (in the split and samples chosen): point it at data with images, "
                        "or check split and max_samples.")
    if len(names) < 2:
        raise TaskError(
            f"{source} has {len(names)} class{'' if len(names) == 1 else 'es'} ({_shown(names)}): zero-shot "
            "classification needs at least two, or every prediction is right and it scores 100% clean and robust "
            "whatever the model. Add the other classes (an image folder holds one sub-folder per class), or check "
            "label_column and class_names."
        )
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[name].append(i)
    clashes = [(name, ids) for name, ids in groups.items() if len(ids) > 1]
    if clashes:
        name, ids = clashes[0]
        given = [raw_names[i] for i in ids] if raw_names is not None and len(raw_names) == len(names) else None
        which = f" ({_shown(given)} as given)" if given else ""
        raise TaskError(
            f"{source}: classes {', '.join(str(i) for i in ids)}{which} are all named {name!r} once cleaned for the "
            f"prompt (lowercase, '_', '-' and '/' as spaces), so their prompts are identical and they cannot be told "
            f"apart{f'; {len(clashes)} names collide in all' if len(clashes) > 1 else ''}. Give each class a distinct "
            "name (class_names, or rename the class folders)."
        )
    problem = _image_column_problem(ds, image_col)
    if problem:
        raise TaskError(f"{source}: the image column {image_col!r} holds {problem}. Set image_column to the column "
                        f"of images (its columns: {', '.join(ds.column_names)}).")
    kind = _label_kind_problem(ds.features.get(label_col))
    if kind:
        raise TaskError(f"{source}: the label column {label_col!r} holds {kind} values, not integer class ids. Set "
                        "label_column to the column of integer labels (or cast it to a ClassLabel).")
    values = ds.select_columns([label_col]).unique(label_col)  # one column: cheap after a selection
    if any(v is None for v in values):
        raise TaskError(f"{source}: some rows of the label column {label_col!r} have no label: label them, or "
                        "remove them.")
    count = len(label_map) if label_map is not None else len(names)
    outside = sorted(v for v in values if not 0 <= int(v) < count)
    if outside:
        raise TaskError(
            f"{source}: label values {outside[:5]} of {label_col!r} are outside [0, {count}), the {count} "
            f"{'label ids of the registry' if label_map is not None else 'class names'}. Give one class name per "
            "label id in label order (class_names), or check label_column."
        )


def template_problem(template: str) -> str | None:
    """What is wrong with one prompt template, or None: it holds exactly one ``{}`` for the class
    name, or none at all (a fixed prompt of one class, as PCAM's)."""
    from ..limits import _placeholder_count

    if not isinstance(template, str) or not template.strip():
        return f"the prompt template {template!r} is empty: write one with '{{}}' for the class name."
    count = _placeholder_count(template)
    if count is None:
        return (f"the prompt template {template!r} is not a format string with '{{}}' alone: write '{{}}' for the "
                "class name and no other braces (a literal brace is '{{' or '}}').")
    if count > 1:
        return (f"the prompt template {template!r} holds {count} '{{}}'; it needs one, for the class name "
                "(or none for a fixed prompt per class).")
    return None


def check_templates(templates: Sequence[str], where: str) -> None:
    """A :class:`TaskError` naming ``where`` for the first bad template of ``templates``."""
    for template in templates:
        problem = template_problem(template)
        if problem:
            raise TaskError(f"{where}: {problem}")
