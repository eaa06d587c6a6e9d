"""Benchmark files: the shipped ones, the checks every file passes, and adding a directory of them.

Offline and fast: nothing is downloaded, no model is built.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CLASS_NAMES, TOY_BENCHMARK, write_toy_benchmark
from tgazsr.data import benchmark_files as bf
from tgazsr.data import registry as reg
from tgazsr.errors import UserError
from timed_run import run_timed

REPO = Path(__file__).resolve().parents[1]


def _shipped():
    return bf.benchmark_paths(bf.BENCHMARKS_DIR)


# --- the shipped files ---------------------------------------------------------------------------


def test_one_file_per_benchmark_of_the_table_and_collections_list_their_members():
    assert sorted(p.stem for p in _shipped()) == sorted(reg.TGA16)
    collections = bf.read_collections(bf.BENCHMARKS_DIR)
    assert collections == {"tga16": tuple(reg.TGA16), "fare": tuple(reg.TGA16)}
    recipe = yaml.safe_load((REPO / "recipes" / "eval_fare.yaml").read_text())
    assert list(collections["fare"]) == recipe["datasets"]


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.stem)
def test_each_shipped_file_is_the_registered_entry(path):
    item = bf.read_benchmark(path)
    assert item.spec == reg.get_benchmark(path.stem) and item.spec.name == path.stem
    assert all(reg.get_benchmark(alias) is reg.BENCHMARKS[path.stem] for alias in item.aliases)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(data["protocols"]) == {"tga", "fare"}
    for protocol in ("tga", "fare"):
        section = data["protocols"][protocol]
        for page in section.get("provenance", []):
            assert page["url"].startswith("https://") and page["shows"].strip(), (path.name, protocol)
        source = reg.get_benchmark(path.stem).source_for(protocol)
        if section["source"].get("same_as") is None:  # a source of its own: its revision says why (or why none)
            assert section["pin"].startswith("Pinned " if source.revision else "Not pinned"), (path.name, protocol)


# --- the checks every file passes ----------------------------------------------------------------


def _toy(tmp_path, replace: tuple[str, str] | None = None, name: str = "toy_shapes") -> Path:
    text = TOY_BENCHMARK if replace is None else TOY_BENCHMARK.replace(*replace)
    assert replace is None or text != TOY_BENCHMARK, replace
    return Path(write_toy_benchmark(tmp_path, name, text))


def test_the_toy_file_reads(tmp_path):
    item = bf.read_benchmark(_toy(tmp_path))
    spec = item.spec
    assert item.aliases == ("toy_shapes-four",) and spec.local_only and spec.fare_source is None
    assert (spec.name, spec.display_name, spec.resize, spec.reference_images) == ("toy_shapes", "Toy shapes", "square", None)
    assert (spec.split, spec.splits, spec.num_classes, spec.hub_check) == ("test", (), 4, "names")
    assert spec.templates == ("a drawing of a {}.",) and spec.fare_templates == ("a drawing of a {}.", "art of a {}.")
    assert spec.source_for("fare").splits == ("test",) and spec.notes == "Four colour-shape classes of generated images."


@pytest.mark.parametrize(
    "replace,field,message",
    [
        (("display_name: Toy shapes\n", ""), "display_name", "missing"),
        (("    num_classes: 4", "    num_classes: four"), "protocols.tga.num_classes", "expected int"),
        (("      label_column: label\n", "      label_column: label\n      colour: red\n"), "protocols.tga.source.colour",
         "unknown field"),
        (("    source: {{same_as", "    pin: Not pinned.\n    source: {{same_as"), "protocols.fare.pin", "unknown field"),
        (("resize: square", "resize: crop"), "resize", "expected one of square, shorter_side_crop"),
        (("{{file: {name}.txt, clean_chars: _-/}}", "{{file: no_such_list.txt}}"), "protocols.tga.class_names.file",
         "no class-name file 'no_such_list.txt'"),
        (('templates: ["a drawing of a {{}}.", "art of a {{}}."]', "templates: {{file: clip_benchmark.json, key: toys}}"),
         "protocols.fare.templates.key", "no key 'toys'"),
        (("{{method: names}}", "{{method: fuzzy}}"), "protocols.tga.label_check.method", "expected one of names"),
        (("      repository: null\n", "      repository: a/b\n      revision: abc123\n"),
         "protocols.tga.source.revision", "full commit id"),
        (("      repository: null\n", "      repository: a/b\n"), "protocols.tga.pin", "missing"),
        (("{{same_as: tga, splits: [test]}}", "{{same_as: tga, splits: [train]}}"), "protocols.fare.source.splits",
         "one of the TGA source's splits"),
        (('templates: ["a drawing of a {{}}."]', 'templates: ["a small thing.", "a large thing."]'), "protocols.tga",
         "2 fixed tga prompts for 4 classes"),
        (("name: {name}", "name: other_toy"), "name", "differs from the file's name"),
        (('templates: ["a drawing of a {{}}."]', 'templates: ["a {{}} drawing of a {{}}."]'), "protocols.tga.templates",
         "the prompt template 'a {} drawing of a {}.' holds 2 '{}'; it needs one"),
        (('templates: ["a drawing of a {{}}.", "art', 'templates: ["a drawing of a {{0}}.", "art'),
         "protocols.fare.templates", "not a format string with '{}' alone"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_file_and_the_field(tmp_path, replace, field, message):
    path = _toy(tmp_path, replace)
    with pytest.raises(bf.BenchmarkFileError) as info:
        bf.read_benchmark(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {field}: ") and message in text, text
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_a_pinned_source_cites_its_pages(tmp_path):
    revision = "b" * 40
    pinned = (
        "      repository: null\n",
        f"      repository: a/b\n      revision: {revision}\n",
    )
    text = TOY_BENCHMARK.replace(*pinned).replace(
        "    notes: Four", f"    pin: Pinned {revision[:7]}, the head of main.\n    notes: Four")
    path = Path(write_toy_benchmark(tmp_path, text=text))
    with pytest.raises(bf.BenchmarkFileError, match=r"protocols.tga.provenance: a pinned source cites the pages"):
        bf.read_benchmark(path)
    unsaid = text.replace(f"Pinned {revision[:7]}, the head of main.", "Not pinned, the head of main.")
    with pytest.raises(bf.BenchmarkFileError, match=rf"protocols.tga.pin: a pinned source says why: 'Pinned {revision[:7]}"):
        bf.read_benchmark(write_toy_benchmark(tmp_path, text=unsaid))
    cited = text.replace("    notes: Four", "    provenance:\n      - url: https://example.org/a/b/tree/main\n"
                         "        shows: the head of main\n    notes: Four")
    spec = bf.read_benchmark(write_toy_benchmark(tmp_path, text=cited)).spec
    assert spec.source_for("tga").notes.startswith(
        f"Pinned {revision[:7]}, the head of main. https://example.org/a/b/tree/main shows the head of main. Four")
    bad_url = cited.replace("https://example.org", "example.org")
    with pytest.raises(bf.BenchmarkFileError, match=r"provenance\[0\].url: expected a public https://"):
        bf.read_benchmark(write_toy_benchmark(tmp_path, text=bad_url))


def test_class_names_beside_the_file_else_shipped(tmp_path):
    spec = bf.read_benchmark(_toy(tmp_path)).spec
    assert spec.class_names_file == str((tmp_path / "toy_shapes.txt").resolve())
    assert reg.load_class_names(spec) == CLASS_NAMES
    shipped = bf.read_benchmark(_toy(tmp_path / "shipped", ("{{file: {name}.txt, clean_chars: _-/}}",
                                                            "{{file: cifar10.txt, clean_chars: _-/}}"))).spec
    assert shipped.class_names_file == "cifar10.txt"  # not beside the file: the shipped list


# --- adding a directory ----------------------------------------------------------------------------


def test_add_benchmark_dir_registers_all_or_nothing(tmp_path, scratch_registry):
    write_toy_benchmark(tmp_path / "good")
    (tmp_path / "good" / "collections.yaml").write_text(
        "toys:\n  description: the toy benchmark and a shipped one\n  members: [toy_shapes, cifar10]\n")
    assert reg.add_benchmark_dir(tmp_path / "good") == ["toy_shapes"]
    assert reg.collection("toys") == ["toy_shapes", "cifar10"] and reg.TGA16 == reg.collection("tga16")
    assert reg.add_benchmark_dir(tmp_path / "good") == ["toy_shapes"]  # the same directory again: a no-op
    bad = tmp_path / "bad"
    write_toy_benchmark(bad, "toy_a")
    write_toy_benchmark(bad, "toy_b", TOY_BENCHMARK.replace("resize: square", "resize: crop"))
    with pytest.raises(bf.BenchmarkFileError, match="toy_b.yaml: resize"):
        reg.add_benchmark_dir(bad)
    with pytest.raises(ValueError, match="Unknown benchmark 'toy_a'"):
        reg.get_benchmark("toy_a")  # the good file of a bad directory is not registered either
    taken = tmp_path / "taken"
    write_toy_benchmark(taken, "another_toy")
    write_toy_benchmark(taken, "cifar10")  # read after another_toy, which it takes back out
    with pytest.raises(bf.BenchmarkFileError, match=r"cifar10.yaml: name: A different benchmark is already registered"):
        reg.add_benchmark_dir(taken)
    with pytest.raises(ValueError, match="Unknown benchmark 'another_toy'"):
        reg.get_benchmark("another_toy")
    assert reg.get_benchmark("cifar10").hub_id == "uoft-cs/cifar10"
    clash = tmp_path / "clash"
    write_toy_benchmark(clash, "toy_c")
    (clash / "collections.yaml").write_text("tga16:\n  description: not the table\n  members: [toy_c]\n")
    with pytest.raises(bf.BenchmarkFileError, match=r"collections.yaml: tga16: A different collection"):
        reg.add_benchmark_dir(clash)
    with pytest.raises(ValueError, match="Unknown benchmark 'toy_c'"):
        reg.get_benchmark("toy_c")
    alias = tmp_path / "alias"
    write_toy_benchmark(alias, "toy_d", TOY_BENCHMARK.replace("aliases: [{name}-four]", "aliases: [cars]"))
    with pytest.raises(bf.BenchmarkFileError, match="toy_d.yaml: name: The alias 'cars' of 'toy_d' already names "
                                                    "the benchmark 'stanford_cars'"):
        reg.add_benchmark_dir(alias)
    with pytest.raises(bf.BenchmarkFileError, match="not a directory"):
        reg.add_benchmark_dir(tmp_path / "missing")


def test_benchmark_dirs_from_the_environment(tmp_path):
    write_toy_benchmark(tmp_path / "mine")
    env = dict(os.environ, PYTHONPATH=str(REPO), **{reg.BENCHMARK_DIRS_ENV: str(tmp_path / "mine")})
    code = ("from tgazsr.data import registry as r; s = r.get_benchmark('toy_shapes'); "
            "print(s.display_name, r.class_names(s), 'toy_shapes' in r.TGA16)")
    proc = run_timed([sys.executable, "-c", code], env=env, measured_s=2, doing="the registry with a benchmark folder from the environment")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "Toy shapes ['red square', 'green circle', 'blue triangle', 'yellow star'] False"


def test_a_template_file_with_a_bad_template_names_the_file_and_the_key(tmp_path, monkeypatch):
    (tmp_path / "mine.json").write_text(json.dumps({"good": ["a {}."], "bad": ["a {}.", "{} or {}"]}))
    monkeypatch.setattr(bf, "TEMPLATES_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"mine\.json: key 'bad': the prompt template '\{\} or \{\}' holds 2"):
        bf.read_templates("mine")
