"""The zoo of published robust CLIPs, as data: ``zoo.yaml`` beside this module, read and checked.

One entry per published model, keyed by its zoo name (what ``tgazsr convert NAME OUTPUT_DIR``
takes), with the facts the converter needs and, as RobustBench keeps its model zoo, the threat
model it was trained for, its training data, its paper and the numbers its authors report::

    fare2-clip:
      source: hf-hub:chs20/fare2-clip      # or the https:// address of a release (downloaded by hand)
      architecture: ViT-L/14 (OpenAI init)
      method: FARE
      threat_model: {norm: Linf, eps: 2/255}   # eps: a fraction "k/255" or a number (of the [0, 1] pixel range)
      training_data: ImageNet           # null: not confirmed
      paper: FARE                          # a key of tgazsr.papers.PAPERS, or {title, authors, venue, url}
      released_by: FARE                    # optional: who published these weights, when not the paper's authors
      quick_gelu: true                     # the activation (the weights do not say)
      tokenizer: openai/clip-vit-large-patch14   # and, for a vision-only checkpoint, the text tower
      vision_only: false                   # optional
      confirmed: "..."                     # the public pages each fact above was read from
      reported:                            # [] when no number is confirmed from a public page
        - url: https://...                 # the page that shows the numbers
          shows: "..."                     # where on it (which table, which column)
          task: zero-shot classification
          datasets: "..."                  # which datasets, averaged or not
          attack: "..."                    # the attack and its settings, or that the page names none
          clean: 67.0                      # accuracy in percent, or null
          robust:
            - {norm: Linf, eps: 2/255, accuracy: 43.1}

Every field is checked when the file is read; an unknown, missing or ill-typed field is a
:class:`ZooFileError` naming the file and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry import close_matches
from ..errors import UserError
from ..papers import PAPERS, Paper
from ..yaml_sections import Section, read_yaml
from .base import HUB_PREFIX, ConversionError

#: The shipped zoo.
ZOO_FILE = Path(__file__).resolve().parent / "zoo.yaml"
#: The norms a threat model may name.
NORMS = ("Linf", "L2")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_FRACTION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*")


class ZooFileError(ValueError, UserError):
    """A zoo file that cannot be used as written; the message names the file and the field."""


class _Section(Section):
    error = ZooFileError


@dataclass(frozen=True)
class ThreatModel:
    """A perturbation budget: the norm and the radius ``eps`` on images in ``[0, 1]``."""

    norm: str
    eps: float

    def __str__(self) -> str:
        steps = self.eps * 255
        radius = f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{self.eps:g}"
        return f"{self.norm} {radius}"


@dataclass(frozen=True)
class Reported:
    """Numbers a model's authors report, where, and under which protocol."""

    url: str
    shows: str
    task: str
    datasets: str
    attack: str
    clean: float | None
    robust: tuple[tuple[ThreatModel, float], ...]

    def summary(self) -> str:
        """``clean 67.0, Linf 2/255 43.1``."""
        parts = [f"clean {self.clean}"] if self.clean is not None else []
        return ", ".join(parts + [f"{threat} {value}" for threat, value in self.robust])


@dataclass(frozen=True)
class ZooEntry:
    """A published robust CLIP: where it is, what it is, and the two facts its files may not carry
    (the activation and the tokenizer). ``confirmed`` names where each fact was read."""

    name: str
    source: str  # hf-hub:ORG/NAME, or the URL of the release (downloaded by hand)
    architecture: str
    threat_model: ThreatModel  # the training budget
    method: str
    paper: Paper
    quick_gelu: bool
    tokenizer: str  # the tokenizer (and, for a vision-only checkpoint, the text tower): a CLIPModel Hub id
    vision_only: bool = False
    confirmed: str = ""
    training_data: str | None = None  # None: not confirmed from a public page
    released_by: Paper | None = None
    reported: tuple[Reported, ...] = ()

    @property
    def eps(self) -> float:
        """The training radius in units of 1/255."""
        return self.threat_model.eps * 255

    @property
    def citation(self) -> str:
        """The paper, and who released the weights when that is another paper's authors."""
        text = self.paper.cite()
        if self.released_by is not None and self.released_by != self.paper:
            text += f"; released by {self.released_by.cite()}"
        return text


def parse_eps(section: Section, key: str, value: Any) -> float:
    """A radius: a number, or a fraction written ``"4/255"``; on images in [0, 1], so in (0, 1]."""
    if isinstance(value, str):
        match = _FRACTION.fullmatch(value)
        if match is None or float(match.group(2)) == 0:
            section.fail(key, f"expected a fraction such as '4/255' or a number, got {value!r}")
        eps = float(match.group(1)) / float(match.group(2))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        eps = float(value)
    else:
        section.fail(key, f"expected a fraction such as '4/255' or a number, got {value!r}")
    if not math.isfinite(eps) or not 0 < eps <= 1:
        section.fail(key, f"{value!r} is not a radius on images in [0, 1] (0 < eps <= 1): write 4/255, not 4")
    return eps


def _threat_model(section: Section) -> ThreatModel:
    norm = section.text("norm")
    if norm not in NORMS:
        section.fail("norm", f"expected one of {', '.join(NORMS)}, got {norm!r}")
    return ThreatModel(norm, parse_eps(section, "eps", section.get("eps", (str, int, float))))


def _accuracy(section: Section, key: str, default: Any = ...) -> float | None:
    value = section.get(key, (int, float), default, none=default is None)
    if value is None:
        return None
    if not math.isfinite(value) or not 0 <= value <= 100:
        section.fail(key, f"expected an accuracy in percent (0 to 100), got {value!r}")
    return float(value)


def _url(section: Section, key: str) -> str:
    url = section.text(key)
    if not url.startswith("https://"):
        section.fail(key, f"expected a public https:// address, got {url!r}")
    return url


def _paper(section: Section, key: str, default: Any = ...) -> Paper | None:
    value = section.get(key, (str, dict), default, none=default is None)
    if value is None:
        return None
    if isinstance(value, str):
        if value not in PAPERS:
            section.fail(key, f"no paper {value!r} in tgazsr.papers (known: {', '.join(PAPERS)}); or write "
                              "{title, authors, venue, url}")
        return PAPERS[value]
    ref = type(section)(section.path, section.field(key), value)
    paper = Paper(title=ref.text("title"), authors=ref.text("authors"), venue=ref.text("venue"), url=_url(ref, "url"),
                  bibtex=ref.text("bibtex", ""))
    ref.done()
    return paper


def _reported(section: Section, key: str) -> tuple[Reported, ...]:
    out = []
    for i, item in enumerate(section.get(key, list)):
        entry = type(section)(section.path, section.field(f"{key}[{i}]"), item)
        url, shows, task = _url(entry, "url"), entry.text("shows"), entry.text("task")
        datasets, attack = entry.text("datasets"), entry.text("attack")
        clean = _accuracy(entry, "clean", None)
        robust = []
        for j, value in enumerate(entry.get("robust", list, [])):
            result = type(section)(section.path, entry.field(f"robust[{j}]"), value)
            accuracy = _accuracy(result, "accuracy")
            robust.append((_threat_model(result), accuracy))
            result.done()
        if clean is None and not robust:
            entry.fail(None, "reports no number: give clean, robust or both")
        entry.done()
        out.append(Reported(url, shows, task, datasets, attack, clean, tuple(robust)))
    return tuple(out)


def _entry(section: Section, name: str) -> ZooEntry:
    source = section.text("source")
    if source.startswith(HUB_PREFIX):
        if source[len(HUB_PREFIX):].strip("/").count("/") != 1:
            section.fail("source", f"expected hf-hub:ORG/NAME, got {source!r}")
    elif not source.startswith("https://"):
        section.fail("source", f"expected hf-hub:ORG/NAME or the https:// address of the release, got {source!r}")
    threat = section.section("threat_model")
    threat_model = _threat_model(threat)
    threat.done()
    entry = ZooEntry(
        name=name, source=source, architecture=section.text("architecture"), threat_model=threat_model,
        method=section.text("method"), paper=_paper(section, "paper"), quick_gelu=section.get("quick_gelu", bool),
        tokenizer=section.text("tokenizer"), vision_only=section.get("vision_only", bool, False),
        confirmed=section.text("confirmed"), training_data=section.text("training_data", none=True),
        released_by=_paper(section, "released_by", None), reported=_reported(section, "reported"),
    )
    section.done()
    return entry


def read_zoo(path: str | Path = ZOO_FILE) -> dict[str, ZooEntry]:
    """Read and check the zoo file ``path``: zoo name -> entry, in the file's order."""
    path = Path(path)
    top = _Section(path, "", read_yaml(path, ZooFileError))
    zoo: dict[str, ZooEntry] = {}
    for name in list(top.items):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            top.fail(str(name), "a zoo name is lower-case letters, digits, '.', '_' and '-'")
        zoo[name] = _entry(top.section(name), name)
    top.done()
    if not zoo:
        top.fail(None, "the zoo has no entries")
    return zoo


ZOO: dict[str, ZooEntry] = read_zoo()


def zoo_entry(name: str) -> ZooEntry | None:
    """The zoo entry named ``name`` (case-insensitive), or None."""
    return ZOO.get(name) or {k.lower(): v for k, v in ZOO.items()}.get(name.lower())


def resolve_zoo(name: str) -> str:
    """The source (``hf-hub:ORG/NAME`` or a release URL) of the zoo entry ``name``."""
    entry = zoo_entry(name)
    if entry is None:
        close = close_matches(name, list(ZOO), n=3, cutoff=0.5)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise ConversionError(f"{name!r} is not in the zoo of published robust CLIPs.{hint} Known: {', '.join(ZOO)} "
                              "(tgazsr convert --list_zoo shows them).")
    return entry.source


def zoo_table() -> str:
    """The zoo as a Markdown table: name, source, architecture, threat model, training data, method,
    paper, and the numbers its authors report."""
    lines = ["| name | source | architecture | threat model (training) | training data | method | paper | reported |",
             "|---|---|---|---|---|---|---|---|"]
    for e in ZOO.values():
        reported = "; ".join(f"{r.summary()} ({r.task}, {r.url})" for r in e.reported) or "none confirmed"
        data = e.training_data or "not confirmed"
        lines.append(f"| `{e.name}` | {e.source} | {e.architecture} | {e.threat_model} | {data} | {e.method} | "
                     f"{e.citation} | {reported} |")
    return "\n".join(lines)
