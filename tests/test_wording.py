"""The project speaks of itself alone: provenance cites the public address and what it shows, a
machine is named by its specification, never by how a page was looked up or which machine a day
happened to bring.

The scan covers the package (code, its strings and comments, benchmark files, class-name lists,
templates), the tests, the benchmarks, the recipes, the docs, README.md and BENCHMARKS.md.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ["tgazsr", "tests", "benchmarks", "recipes", "docs", "accelerate_configs", ".ci", "README.md",
           "BENCHMARKS.md", "pyproject.toml"]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".json", ".toml", ".sh", ".cfg", ".ini", ""}
SKIPPED_DIRS = {"__pycache__", ".git", ".venv", "build", "dist"}

#: Phrases that tell how or where something was looked up, or name a machine by circumstance.
CIRCUMSTANCE = [
    r"\bseen on\b",
    r"\b(?:was|were|not|only|first) seen\b",
    r"\bseen only\b",
    r"\bstored (?:hub )?pages?\b",
    r"\bsearch tools?\b",
    r"\bthis session\b",
    r"\bthe sessions\b",
    r"\blast session\b",
    r"\btoday'?s (?:machine|run|ci)\b",
    r"\bthat day'?s\b",
    r"\blooked up\b",
    r"\bcut-off\b",
    r"\blent\b",
    r"\bborrowed\b",
    r"\bcould not be read (?:here|with)\b",
    r"\bnot readable (?:here|with)\b",
    r"\bviewer was\b",
]
PATTERN = re.compile("|".join(CIRCUMSTANCE), re.IGNORECASE)


def _files():
    for name in SCANNED:
        root = REPO / name
        paths = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in paths:
            if not path.is_file() or path.suffix not in SUFFIXES or SKIPPED_DIRS & set(path.parts):
                continue
            if path.resolve() == Path(__file__).resolve() or path.name.endswith(".egg-info"):
                continue
            yield path


def circumstance_lines(paths) -> list[str]:
    """``file:line: text`` of every line holding a circumstance phrase."""
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            match = PATTERN.search(line)
            if match:
                where = path.relative_to(REPO) if REPO in path.parents else path
                found.append(f"{where}:{number}: {match.group(0)!r} in {line.strip()[:160]}")
    return found


def test_the_patterns_catch_circumstance_and_spare_plain_words(tmp_path):
    caught = ["the head was seen only as a short id", "no stored page of it", "read with the search tools",
              "This session's machine is slower", "on that day's machine", "no GPU was lent", "Seen on the card"]
    spared = ["an excellent, silent, equivalent result", "seen = {}", "a CLIPModel seen as a classifier",
              "cutoff=0.6", "the head of main, by its short id"]
    sample = tmp_path / "sample.md"
    sample.write_text("\n".join(caught + spared) + "\n", encoding="utf-8")
    found = circumstance_lines([sample])
    assert [line.split(":")[1] for line in found] == [str(n) for n in range(1, len(caught) + 1)], found
    assert found[0].startswith(f"{sample}:1: 'was seen' in ")


def test_no_circumstance_wording_in_the_repository():
    files = list(_files())
    assert any(p.suffix == ".yaml" and "benchmarks" in p.parts for p in files)  # the benchmark files are scanned
    found = circumstance_lines(files)
    assert not found, "Cite the public address and what it shows; name a machine by its specification:\n" + "\n".join(found)
