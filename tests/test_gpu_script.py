"""benchmarks/gpu.sh, the GPU day: its smoke run (CPU, tiny settings) passes every section and renders
the BENCHMARKS.md table, a spent budget skips sections with a note, a failing section is named and the
others' results are kept, and the report says what was not measured."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest

from timed_run import run_timed

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_report  # noqa: E402
import gpu_run  # noqa: E402


def _gpu_sh(tmp_path, *args, measured_s: float, doing: str):
    docs = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", docs)
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = run_timed(["bash", str(SCRIPT), "--out", str(tmp_path / "out"), "--docs", str(docs), *args],
                     cwd=ROOT, env=env, measured_s=measured_s, doing=doing)
    results_file = tmp_path / "out" / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    return done, results, docs.read_text()


def _numbers(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _outside_the_section(text: str) -> str:
    before, rest = text.split(gpu_report.START)
    return before + rest.split(gpu_report.END)[1]


@pytest.mark.launches
def test_the_smoke_run_passes_every_section_and_renders_the_table(tmp_path):
    original = (ROOT / "BENCHMARKS.md").read_text()
    # about 90 s on 2 shared cores; each section's limit scaled so that load cannot stop it
    done, results, docs = _gpu_sh(tmp_path, "--smoke", "--budget", "1200", "--limit_scale", "10",
                                  measured_s=90, doing="benchmarks/gpu.sh --smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (ROOT / "BENCHMARKS.md").read_text() == original  # the smoke run writes only where it is told
    assert results["schema"] == gpu_run.SCHEMA and results["env"]["smoke"] is True
    assert {name: s["status"] for name, s in results["sections"].items()} == {n: "ok" for n in gpu_run.SECTIONS}
    for key in ("ratio_eager", "ratio_compiled"):
        part = results[key]
        assert set(part["loops"]) == {"tgazsr", "reference structure"} and part["speedup"] > 0
    assert results["ratio_compiled"]["compile"] == "eager" and results["ratio_compiled"]["compiled_modules"] == 3
    assert [(r["arch"], r["activation_checkpointing"], len(r["points"])) for r in results["memory"]] == [
        ("tiny", False, 2), ("tiny", True, 2)]
    assert results["eval"]["pgd_s_per_image"] > 0 and results["eval"]["autoattack_s_per_image"] > 0
    assert [row["recipe"] for row in results["eval"]["protocols"]] == ["recipes/eval_tga16.yaml",
                                                                       "recipes/eval_fare.yaml"]
    e2e = results["e2e"]
    assert "model.safetensors" in e2e["saved"] and e2e["train_loop_s"] > 0
    assert set(e2e["trained"]["robust"]) == {"pgd@1/255"}
    assert all(math.isfinite(x) for x in _numbers(results))
    # the table, between the markers of the copy; the rest of the file as it was
    section = docs.split(gpu_report.START)[1].split(gpu_report.END)[0]
    assert "`bash benchmarks/gpu.sh --smoke` on CPU" in section and "measure nothing" in section
    assert "| eager | tgazsr |" in section and "| compiled (eager) | reference structure |" in section
    assert "| tiny | yes | fp32 |" in section and "AutoAttack fare" in section and "Saved: " in section
    assert _outside_the_section(docs) == _outside_the_section(original)


def test_a_spent_budget_skips_the_sections_with_a_note(tmp_path):
    done, results, docs = _gpu_sh(tmp_path, "--smoke", "--budget", "5", measured_s=3,
                                  doing="benchmarks/gpu.sh --smoke --budget 5")
    assert done.returncode == 1
    assert {s["status"] for s in results["sections"].values()} == {"skipped"}
    assert "error: section env skipped: " in done.stderr and "did not finish or did not run" in done.stderr
    assert "| environment | skipped |" in docs and "not measured: section memory skipped" in docs


def test_a_failing_section_is_named_and_the_rest_is_recorded(tmp_path):
    """Without --smoke on a machine without a GPU, the env section fails: named, and the rest skipped."""
    done, results, docs = _gpu_sh(tmp_path, "--limit_scale", "10", measured_s=10,
                                  doing="benchmarks/gpu.sh without a GPU")
    assert done.returncode == 1
    assert "error: section env failed with exit status" in done.stderr
    assert "no CUDA device is visible" in done.stdout + done.stderr
    assert results["sections"]["env"]["status"] == "failed"
    assert {results["sections"][n]["status"] for n in gpu_run.SECTIONS[1:]} == {"skipped"}
    assert "| environment | failed |" in docs


def test_the_report_names_what_was_not_measured_and_needs_its_markers(tmp_path):
    results = {"schema": gpu_run.SCHEMA, "version": 1, "sections": {
        "env": {"status": "ok", "seconds": 2, "limit_s": 30, "note": ""},
        "memory": {"status": "timeout", "seconds": 120, "limit_s": 120, "note": "stopped at its 120 s limit"}},
        "env": {"gpu_name": "NVIDIA H200", "gpu_memory_gib": 139.8, "driver": "570.1", "cuda": "12.8",
                "torch": "2.13.0", "started": "2026-12-03T10:00:00+00:00", "smoke": False}}
    text = gpu_report.render(results, seconds=300)
    assert text.startswith("`bash benchmarks/gpu.sh` on NVIDIA H200 (140 GiB), driver 570.1, CUDA 12.8, torch 2.13.0")
    assert "not measured: section memory timeout (stopped at its 120 s limit)." in text
    assert "- eager: not measured: section ratio_eager did not run." in text
    assert "| end to end | did not run |" in text
    docs = tmp_path / "doc.md"
    docs.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="has no section marked"):
        gpu_report.write_section(str(docs), text)
    # the smoke run's default table ($OUT/BENCHMARKS.md) is not there before the first run: it is written
    fresh = tmp_path / "out" / "BENCHMARKS.md"
    gpu_report.write_section(str(fresh), text)
    assert fresh.read_text().split(gpu_report.START)[1].split(gpu_report.END)[0] == "\n" + text


def test_a_non_finite_figure_is_never_written(tmp_path):
    path = str(tmp_path / "results.json")
    gpu_run.write_part(path, "eval", {"pgd_s_per_image": 1.0})
    with pytest.raises(ValueError, match=r"eval.pgd_s_per_image is nan"):
        gpu_run.write_part(path, "eval", {"pgd_s_per_image": float("nan")})
    assert json.loads(Path(path).read_text())["eval"] == {"pgd_s_per_image": 1.0}
