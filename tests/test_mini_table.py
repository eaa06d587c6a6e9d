"""The mini table's generator (benchmarks/mini_table.py) on fake results: undefended rows with the
plain white-box PGD, defended rows with non-adaptive and adaptive columns side by side, the rows of
an earlier file merged with their provenance. Nothing is trained or evaluated."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import mini_table
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

SETS = ("/w/world_shapes", "/w/world_sizes")
EPS = "8/255"


def bench(clean: float, robust: dict[str, float], defended: bool = False) -> dict:
    """A results dict as the harness writes it: the same numbers on every set."""
    per = {}
    for name in SETS:
        entry = {"clean_accuracy": clean, "robust": dict(robust), "num_samples": 100 if defended else 400}
        if defended:
            entry.update(threat_models=["non_adaptive", "adaptive"], clean_accuracy_undefended=clean + 0.1)
        per[name] = entry
    average = {"clean_accuracy": clean, "robust": dict(robust), "num_datasets": len(SETS)}
    if defended:
        average["clean_accuracy_undefended"] = clean + 0.1
    out = {"datasets": per, "average": average}
    if defended:
        out["defense"] = {"name": "ttc", "settings": {"eps": 4.0, "steps": 2, "tau_reference": "auto"},
                          "adaptive_gradient": "bpda", "eot_draws": 2, "score_draws": 1, "tau_reference": "base"}
    return out


def defended(clean, non_adaptive, adaptive):
    return bench(clean, {f"non_adaptive:pgd@{EPS}": non_adaptive, f"adaptive:pgd@{EPS}": adaptive,
                         f"worst@{EPS}": min(non_adaptive, adaptive)}, defended=True)


META = {"seeds": [0], "max_steps": 250, "batch": 64, "eval_steps": 20, "machine": "a test machine",
        "minutes": 3.0, "date": "2026-12-03", "note": ""}


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_rows_and_their_defenses():
    assert mini_table.split_row("tga_zsr+ttc") == ("tga_zsr", "ttc")
    assert mini_table.split_row("agft") == ("agft", None)
    assert mini_table.title("clip+ttc") == "TTC on CLIP" and mini_table.title("tga_zsr+ttc") == "TTC on TGA-ZSR"
    assert {"agft", "clip+ttc", "tga_zsr+ttc"} <= set(mini_table.ROWS)
    for bad in ("tga_zsr+none", "tga_zsr+nope", "nope+ttc"):
        with pytest.raises(ValueError, match="not a table row"):
            mini_table.split_row(bad)


def test_undefended_and_defended_rows_get_their_own_robust_columns():
    runs = {"clip": [bench(0.77, {f"pgd@{EPS}": 0.14}), bench(0.77, {f"pgd@{EPS}": 0.16})],
            "tga_zsr+ttc": [defended(0.60, 0.50, 0.20)]}
    summary = mini_table.summarize(runs, {"tga_zsr+ttc": dict(META, note="other work shared the cores")})
    assert summary["clip"]["columns"] == {"white_box": f"pgd@{EPS}"}
    assert summary["tga_zsr+ttc"]["columns"] == {"non_adaptive": f"non_adaptive:pgd@{EPS}",
                                                  "adaptive": f"adaptive:pgd@{EPS}", "worst": f"worst@{EPS}"}
    assert summary["clip"]["average"]["white_box"] == pytest.approx(15.0)
    assert summary["clip"]["average"]["white_box_sd"] == pytest.approx(1.4142, abs=1e-3)
    assert summary["tga_zsr+ttc"]["average"]["clean_undefended"] == pytest.approx(70.0)
    text = mini_table.markdown(summary, dict(META, seeds=[0, 1], date="2026-11-25"))
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")][:6] == [
        "method", "robust: white-box PGD", "robust: non-adaptive", "robust: adaptive", "robust: both", "avg clean"]
    rows = table_rows(text)
    assert rows["CLIP"][:5] == ["15.0 ± 1.4", "–", "–", "–", "77.0 ± 0.0"]
    # a defense's non-adaptive number never stands without its adaptive one
    assert rows["TTC on TGA-ZSR"][:5] == ["–", "50.0 ± 0.0", "20.0 ± 0.0", "20.0 ± 0.0", "60.0 ± 0.0"]
    assert rows["TTC on TGA-ZSR"][5] == "50.0 ± 0.0 / 20.0 ± 0.0 / 60.0 ± 0.0"  # non-adaptive / adaptive / clean
    assert rows["CLIP"][5] == "15.0 ± 1.4 / 77.0 ± 0.0"
    assert all(len(cells) == len(rows["CLIP"]) for cells in rows.values())
    caption = text.splitlines()[0]
    assert "EOT over 2 draws" in caption and "100 images per set" in caption and "bpda" in caption
    assert "ttc settings: eps 4.0, steps 2;" in caption  # the resolved reference, not 'auto', is named
    assert "tau measured by TTC on TGA-ZSR: the world's base CLIP" in caption
    assert "CLIP: seeds 0, 1, run 2026-11-25 on a test machine" in caption  # rows without provenance: the meta's
    assert "TTC on TGA-ZSR: seed 0, run 2026-12-03 on a test machine, 3 min (other work shared the cores)" in caption


def test_a_defended_run_without_its_adaptive_column_is_refused():
    one_sided = bench(0.6, {f"non_adaptive:pgd@{EPS}": 0.5}, defended=True)
    with pytest.raises(ValueError, match="adaptive"):
        mini_table.summarize({"clip+ttc": [one_sided]})


def test_a_non_finite_accuracy_is_not_summarized():
    with pytest.raises(ValueError, match="non-finite"):
        mini_table.summarize({"clip": [bench(float("nan"), {f"pgd@{EPS}": 0.1})]})


def test_merge_keeps_earlier_rows_with_their_provenance(tmp_path):
    prefix = str(tmp_path / "results" / "mini_table")
    args = argparse.Namespace(seeds=[0], results=prefix, no_update_docs=True, machine="machine A",
                              machine_note="quiet")
    protocol = argparse.Namespace(max_steps=250, per_device_train_batch_size=64, eval_attack_steps=20)
    earlier = {"clip": [bench(0.77, {f"pgd@{EPS}": 0.14})]}
    mini_table.report(earlier, args, protocol, 0.0, {})
    runs, provenance = mini_table.previous_rows(prefix + ".json", {"max_steps": 250, "batch": 64, "eval_steps": 20})
    assert list(runs) == ["clip"] and provenance["clip"]["machine"] == "machine A"
    runs["clip+ttc"] = [defended(0.7, 0.4, 0.1)]
    provenance["clip+ttc"] = dict(META, machine="machine B")
    summary = mini_table.report(runs, argparse.Namespace(**{**vars(args), "machine": "machine B"}), protocol, 0.0,
                                provenance)
    assert list(summary) == ["clip", "clip+ttc"]
    saved = json.loads(Path(prefix + ".json").read_text())
    assert saved["summary"]["clip"]["provenance"]["machine"] == "machine A"
    assert saved["summary"]["clip+ttc"]["provenance"]["machine"] == "machine B"
    text = Path(prefix + ".md").read_text()
    assert "CLIP: seed 0" in text and "machine A" in text and "TTC on CLIP: seed 0" in text
    assert Path(prefix + ".png").is_file()
    with pytest.raises(SystemExit, match="another protocol"):
        mini_table.previous_rows(prefix + ".json", {"max_steps": 50, "batch": 64, "eval_steps": 20})
    with pytest.raises(SystemExit, match="no earlier results"):
        mini_table.previous_rows(str(tmp_path / "none.json"), {})


def test_help_runs():
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mini_table.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--merge" in res.stdout and "tga_zsr+ttc" in res.stdout and "--eot_draws" in res.stdout
