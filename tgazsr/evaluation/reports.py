"""Reports of an evaluation: results.json, results.md (the TGA-style table with averages and each
dataset's sanity record), the trade-off plot, and side-by-side comparisons of several runs.

results.json carries ``schema_version`` (:data:`RESULTS_SCHEMA_VERSION`); :func:`read_results` is
the one reader of it (``tgazsr plot``, ``tgazsr leaderboard``): it names a truncated file as such,
a JSON that is not a results file by the field it lacks, and a file of a newer schema by its
version. A file written before ``schema_version`` existed (version 0) is read when its fields are
valid: the fields the readers use are the same in versions 0 and 1.
"""

from __future__ import annotations

import json
import logging
import math
import os

from ..errors import UserError
from .cache import HARNESS_VERSION

logger = logging.getLogger("tgazsr.evaluation")

#: The version of results.json's layout; a reader refuses a newer one. 1: ``schema_version`` added
#: (files without it are version 0, the same fields otherwise).
RESULTS_SCHEMA_VERSION = 1


class ResultsFileError(ValueError, UserError):
    """A results file that cannot be read as one (missing, truncated, foreign, of a newer schema, holding
    a value that is not an accuracy), or results that cannot be compared. The message names the file
    and the field, and says how to get a good one."""


def eps_label(eps: float, norm: str = "linf") -> str:
    """1.0 -> '1/255' (L-inf, units of 1/255); 0.5 -> 'l2=0.5'."""
    text = f"{eps:g}"
    return f"{text}/255" if norm == "linf" else f"l2={text}"


def result_key(attack: str, eps: float, norm: str = "linf", threat: str | None = None) -> str:
    """The column name of one attack at one budget, e.g. 'pgd@1/255'; under a threat model of a
    test-time defense, e.g. 'adaptive:pgd@1/255'."""
    return (f"{threat}:" if threat else "") + f"{attack}@{eps_label(eps, norm)}"


THREAT_MODEL_TEXT = {
    "non_adaptive": "non_adaptive: the adversarial images are made on the undefended model, then the defense runs "
                    "(an upper bound on robustness)",
    "adaptive": "adaptive: the attack sees the whole defended classifier (gradients through the defense, EOT over "
                "its randomness)",
}


def threat_model_text(results: dict) -> str:
    """The defense and threat models of a results dict, in one sentence."""
    defense = results.get("defense") or {}
    name = defense.get("name", "none")
    threats = results.get("threat_models") or defense.get("threat_models") or []
    if name == "none" and not threats:
        return "Threat model: white-box attacks on the model itself (no test-time defense)."
    parts = [f"Test-time defense: `{name}`"]
    if defense.get("settings"):
        parts[0] += " (" + ", ".join(f"{k} {v}" for k, v in defense["settings"].items() if v is not None) + ")"
    detail = []
    if "adaptive" in threats:
        detail.append(f"adaptive gradient `{defense.get('adaptive_gradient')}`, EOT draws {defense.get('eot_draws')}")
        term = defense.get("adaptive_term")
        if term and term.get("weight"):
            detail.append(f"a second adaptive pass, on the samples the first left standing, adds the defense's own "
                          f"term to the loss (weight {term['weight']:g}): it {term['what']}")
    if defense.get("random"):
        detail.append(f"each prediction scored under {defense.get('score_draws')} draw(s), correct only if correct "
                      "under every draw")
    return (parts[0] + ". Threat models: " + "; ".join(THREAT_MODEL_TEXT.get(t, t) for t in threats)
            + (f" ({'; '.join(detail)})" if detail else "") + ".")


def averages(per_dataset: dict[str, dict]) -> dict:
    """Mean over datasets of clean accuracy and of each robust column present in all of them."""
    rows = list(per_dataset.values())
    if not rows:
        return {"num_datasets": 0}
    keys = [k for k in rows[0].get("robust", {}) if all(k in r.get("robust", {}) for r in rows)]
    out = {
        "num_datasets": len(rows),
        "clean_accuracy": sum(r["clean_accuracy"] for r in rows) / len(rows),
        "robust": {k: sum(r["robust"][k] for r in rows) / len(rows) for k in keys},
    }
    if all(r.get("clean_accuracy_undefended") is not None for r in rows):
        out["clean_accuracy_undefended"] = sum(r["clean_accuracy_undefended"] for r in rows) / len(rows)
    shift_keys = [k for k in (rows[0].get("attention_shift") or {}) if all(k in (r.get("attention_shift") or {})
                                                                        for r in rows)]
    if shift_keys:
        out["attention_shift"] = {k: sum(r["attention_shift"][k] for r in rows) / len(rows) for k in shift_keys}
    return out


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def results_markdown(results: dict) -> str:
    """The TGA-style table (datasets as columns, averages last) and a per-dataset detail table."""
    per = results.get("datasets", {})
    names = list(per)
    heads = [per[n].get("display_name", n) for n in names]
    keys = list(dict.fromkeys(k for r in per.values() for k in r.get("robust", {})))
    avg = results.get("average", {})
    settings = results.get("settings", {})
    lines = [
        f"# Zero-shot robustness of `{results.get('model')}`",
        "",
        f"Top-1 accuracy (%) on {_which_samples(settings)} of each dataset. "
        f"Attacks: {', '.join(settings.get('attacks', []))}; budgets in units of 1/255 (L-inf) unless noted. "
        "A sample is robust only if it is classified correctly clean and after every attack of the run "
        "(per-sample worst case" + (", under every threat model" if results.get("threat_models") else "") + ").",
        "",
        threat_model_text(results),
        "",
    ]
    if names:
        lines.append("| | " + " | ".join(heads) + " | Average |")
        lines.append("|---" * (len(names) + 2) + "|")
        for key in keys:
            cells = [_pct(per[n]["robust"].get(key)) for n in names]
            lines.append(f"| robust {key} | " + " | ".join(cells) + f" | {_pct(avg.get('robust', {}).get(key))} |")
        cells = [_pct(per[n]["clean_accuracy"]) for n in names]
        defended = any(per[n].get("clean_accuracy_undefended") is not None for n in names)
        lines.append(f"| clean{' (defended)' if defended else ''} | " + " | ".join(cells)
                     + f" | {_pct(avg.get('clean_accuracy'))} |")
        if defended:
            cells = [_pct(per[n].get("clean_accuracy_undefended")) for n in names]
            lines.append("| clean (undefended) | " + " | ".join(cells)
                         + f" | {_pct(avg.get('clean_accuracy_undefended'))} |")
        shift_keys = list(dict.fromkeys(k for r in per.values() for k in (r.get("attention_shift") or {})))
        for key in shift_keys:
            cells = [_num3((per[n].get("attention_shift") or {}).get(key)) for n in names]
            lines.append(f"| attention shift {key} | " + " | ".join(cells)
                         + f" | {_num3((avg.get('attention_shift') or {}).get(key))} |")
        lines += ["", "| dataset | samples | classes | clean | " + " | ".join(keys) + " | seconds |",
                  "|---" * (len(keys) + 5) + "|"]
        for n in names:
            r = per[n]
            lines.append(
                f"| {r.get('display_name', n)} | {r['num_samples']} | {r.get('num_classes', '')} | "
                f"{_pct(r['clean_accuracy'])} | " + " | ".join(_pct(r["robust"].get(k)) for k in keys)
                + f" | {r.get('seconds', 0):.1f} |"
            )
    sanity = [(per[n].get("display_name", n), per[n].get("sanity")) for n in names if per[n].get("sanity")]
    if any((per[n].get("attention_shift") or {}) for n in names):
        lines += ["", "Attention shift: the mean L2 distance between the model's text-guided attention maps (true "
                  "class) of the clean and the adversarial image, over the samples each column attacked.", ""]
    if sanity:
        lines += ["", "## Sanity checks", ""]
        for head, record in sanity:
            lines.append(f"- {head}: " + sanity_line(record))
    skipped = [(per[n].get("display_name", n), per[n]["skipped_images"]) for n in names if per[n].get("skipped_images")]
    if skipped:
        lines += ["", "## Unreadable images skipped", "",
                  "Left out with `skip_unreadable_images` (each dataset's accuracy is over the images that decode):", ""]
        lines += [f"- {head}: {count} skipped, {per[n]['num_samples']} scored"
                  for (head, count), n in zip(skipped, [n for n in names if per[n].get("skipped_images")])]
    errors = results.get("errors") or {}
    if errors:
        lines += ["", "## Datasets not evaluated", ""]
        lines += [f"- **{n}**: {msg.splitlines()[0]}" for n, msg in errors.items()]
    lines += ["", f"Model weights fingerprint: `{results.get('model_fingerprint')}`; "
              f"tgazsr evaluation harness v{HARNESS_VERSION}.", ""]
    return "\n".join(lines)


def _num3(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _which_samples(settings: dict) -> str:
    n = settings.get("max_samples")
    if not n:
        return "all test samples"
    if settings.get("sample_order") == "clip_benchmark":
        return f"the {n} test samples CLIP_benchmark scores with --n_samples {n} (its shuffled order, seed " \
               f"{settings.get('seed', 0)})"
    return f"the first {n} test samples"


def _accuracy_problem(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {value!r}, not a number"
    if not math.isfinite(value) or not 0 <= value <= 1:
        return f"is {value!r}, not an accuracy in [0, 1]"
    return None


def results_problem(results) -> str | None:
    """What makes ``results`` (a parsed results.json) unusable, or None: the first missing or bad
    field, by its path in the file (``datasets.cifar10.clean_accuracy``)."""
    if not isinstance(results, dict):
        return f"it holds a JSON {type(results).__name__}, not an object"
    version = results.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return f"field schema_version is {version!r}, not a version number"
    if version > RESULTS_SCHEMA_VERSION:
        return (f"its schema_version is {version}, newer than this tgazsr reads ({RESULTS_SCHEMA_VERSION}): upgrade "
                "tgazsr to read it")
    if "datasets" not in results:
        return "missing field datasets"
    per = results["datasets"]
    if not isinstance(per, dict):
        return f"field datasets is a {type(per).__name__}, not an object of datasets"
    for name, row in per.items():
        where = f"datasets.{name}"
        if not isinstance(row, dict):
            return f"field {where} is not an object"
        for required in ("clean_accuracy", "robust", "num_samples"):
            if required not in row:
                return f"missing field {where}.{required}"
        problem = _accuracy_problem(row["clean_accuracy"])
        if problem:
            return f"field {where}.clean_accuracy {problem}"
        if not isinstance(row["robust"], dict):
            return f"field {where}.robust is not an object of accuracies"
        for key, value in row["robust"].items():
            problem = _accuracy_problem(value)
            if problem:
                return f"field {where}.robust.{key} {problem}"
    average = results.get("average")
    if average is not None and not isinstance(average, dict):
        return "field average is not an object"
    return None


def read_results(path: str) -> dict:
    """The results an evaluation wrote to ``path`` (a results.json, or the folder holding it), checked:
    a missing, truncated or foreign file, one of a newer ``schema_version``, or one holding a value
    that is not an accuracy raises :class:`ResultsFileError` naming the file and the field. The
    ``average`` is computed from the datasets when the file has none."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "results.json")):
        path = os.path.join(path, "results.json")
    rerun = "rerun the evaluation that writes it (tgazsr evaluate ... --output_dir DIR writes DIR/results.json)"
    if not os.path.isfile(path):
        found = "a folder without results.json" if os.path.isdir(path) else "no such file"
        raise ResultsFileError(f"{path}: {found}. Pass the results.json of an evaluation, or {rerun}.")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        results = json.loads(text)
    except (UnicodeDecodeError, ValueError) as err:
        where = f"{err.msg} at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) \
            else str(err)
        raise ResultsFileError(f"{path} is truncated or not JSON ({where}); {rerun}.") from None
    problem = results_problem(results)
    if problem:
        raise ResultsFileError(f"{path} is not a tgazsr results file: {problem}. Pass the results.json of an "
                               f"evaluation, or {rerun}.")
    if results.get("average") is None:
        results["average"] = averages(results["datasets"])
    return results


def write_reports(results: dict, output_dir: str, plot: bool = True) -> None:
    os.makedirs(output_dir, exist_ok=True)
    results.setdefault("schema_version", RESULTS_SCHEMA_VERSION)
    tmp = os.path.join(output_dir, "results.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, os.path.join(output_dir, "results.json"))
    with open(os.path.join(output_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(results_markdown(results))
    write_exports(results, output_dir)
    if plot and results.get("datasets"):
        try:
            from .plot import plot_tradeoff

            plot_tradeoff([results], os.path.join(output_dir, "tradeoff.png"))
        except Exception as err:  # noqa: BLE001 - a plot must never lose the numbers
            logger.warning("Could not draw the trade-off plot: %s", err)


def export_rows(results: dict) -> list[dict]:
    """One CLIP_benchmark-style record per dataset: dataset, model, task, metrics (acc1 = clean
    top-1; one ``robust_acc1@<attack>@<eps>`` per robust column), plus the attack settings."""
    rows = []
    for name, r in (results.get("datasets") or {}).items():
        metrics = {"acc1": r.get("clean_accuracy")}
        if r.get("clean_accuracy_undefended") is not None:
            metrics["acc1_undefended"] = r["clean_accuracy_undefended"]
        metrics.update({f"robust_acc1@{k}": v for k, v in (r.get("robust") or {}).items()})
        metrics.update({f"attention_shift@{k}": v for k, v in (r.get("attention_shift") or {}).items()})
        defense = results.get("defense") or {}
        rows.append({
            "dataset": name, "model": results.get("model"), "model_fingerprint": results.get("model_fingerprint"),
            "task": "zeroshot_classification", "protocol": results.get("protocol"), "split": r.get("split"),
            "num_samples": r.get("num_samples"), "metrics": metrics,
            "attack_settings": (results.get("settings") or {}).get("attack_settings"),
            "defense": defense.get("name", "none"), "defense_settings": defense.get("settings"),
            "threat_models": results.get("threat_models") or [],
        })
    return rows


def write_exports(results: dict, output_dir: str) -> None:
    """``results.jsonl`` (one CLIP_benchmark-style record per dataset) and ``results.csv``."""
    import csv

    rows = export_rows(results)
    with open(os.path.join(output_dir, "results.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    keys = list(dict.fromkeys(k for row in rows for k in row["metrics"]))
    with open(os.path.join(output_dir, "results.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "dataset", "split", "num_samples", *keys])
        for row in rows:
            writer.writerow([row["model"], row["dataset"], row["split"], row["num_samples"],
                             *[row["metrics"].get(k) for k in keys]])


def leaderboard_markdown(runs: list[dict], labels: list[str], key: str | None = None) -> str:
    """Several results files in one table, best worst-case robust accuracy first: average clean and
    robust accuracy over the datasets all runs share, then each dataset's robust accuracy."""
    from .plot import common_key

    key = key or common_key(runs)
    if key is None:
        raise ResultsFileError("The results share no robust accuracy column: evaluate the runs with a common attack "
                               "and budget (e.g. --attacks pgd --eps 1), or pass --key with a column they all have.")
    shared = [n for n in runs[0]["datasets"] if all(n in r["datasets"] for r in runs)]
    rows = []
    for run, label in zip(runs, labels):
        per = [run["datasets"][n] for n in shared]
        clean = sum(r["clean_accuracy"] for r in per) / max(len(per), 1)
        robust = sum(r["robust"].get(key, float("nan")) for r in per) / max(len(per), 1)
        rows.append((robust, clean, label, [r["robust"].get(key) for r in per]))
    rows.sort(key=lambda row: -row[0])
    heads = [runs[0]["datasets"][n].get("display_name", n) for n in shared]
    lines = [f"Robust = {key} (top-1 %, a sample counts only if correct clean and under every attack); "
             f"{len(shared)} shared datasets.", "",
             "| rank | model | avg robust | avg clean | " + " | ".join(heads) + " |",
             "|---" * (4 + len(heads)) + "|"]
    for i, (robust, clean, label, cells) in enumerate(rows, 1):
        lines.append(f"| {i} | {label} | {_pct(robust)} | {_pct(clean)} | " + " | ".join(_pct(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sanity_line(record: dict) -> str:
    """One line of a dataset's sanity record: passed, or a warning naming each failed check."""
    if record.get("passed"):
        parts = ["passed"]
    else:
        parts = ["**WARNING**: " + "; ".join(record.get("warnings", []))]
    large = record.get("large_eps")
    if large:
        parts.append(f"PGD at {large['eps']} leaves {100 * large['robust_accuracy']:.1f}% of {large['num_samples']}")
    raised = record.get("attack_raised_loss") or {}
    if raised:
        low = min(raised.values())
        parts.append(f"attacks raised the margin on at least {100 * low:.0f}% of attacked samples")
    clean = record.get("clean_accuracy")
    if clean and clean.get("undefended") is not None:
        parts.append(f"clean {100 * clean['defended']:.1f}% defended, {100 * clean['undefended']:.1f}% undefended")
    if record.get("flags"):
        parts.append("**FLAG**: " + "; ".join(record["flags"]))
    return "; ".join(parts) + "."


def comparison_markdown(runs: dict[str, dict]) -> str:
    """Side-by-side table (top-1 %) of several results dicts over their common datasets; with the
    attention shift (``attention_shift`` in the results: the mean L2 distance between the text-guided
    attention maps of the clean and the adversarial images) as a column per model and robust
    column, when every model reports it."""
    names = list(runs)
    first = runs[names[0]]
    keys = sorted({k for r in first["datasets"].values() for k in r.get("robust", {})})
    shift_keys = [k for k in keys if any(k in (d.get("attention_shift") or {}) for r in runs.values()
                                         for d in r["datasets"].values())]
    # the datasets where every model has a shift for the column (none without samples to attack)
    measured = {k: [d for d in first["datasets"] if all(k in (r["datasets"].get(d, {}).get("attention_shift") or {})
                                                        for r in runs.values())] for k in shift_keys}

    def columns(n: str) -> list[str]:
        return [f"{n} clean", *(f"{n} {k}" for k in keys), *(f"{n} attention shift {k}" for k in shift_keys)]

    header = "| dataset | " + " | ".join(c for n in names for c in columns(n)) + " |"
    rule = "|---|" + "---|" * (len(names) * (1 + len(keys) + len(shift_keys)))
    rows = []
    for dataset in first["datasets"]:
        cells = []
        for n in names:
            r = runs[n]["datasets"].get(dataset, {})
            cells.append(_pct(r.get("clean_accuracy")))
            cells += [_pct(r.get("robust", {}).get(k)) for k in keys]
            cells += [_num3((r.get("attention_shift") or {}).get(k)) for k in shift_keys]
        rows.append(f"| {os.path.basename(dataset.rstrip('/'))} | " + " | ".join(cells) + " |")
    avg = []
    for n in names:
        a = runs[n].get("average") or averages(runs[n]["datasets"])
        avg.append(_pct(a.get("clean_accuracy")))
        avg += [_pct((a.get("robust") or {}).get(k)) for k in keys]
        shift = runs[n]["datasets"]
        avg += [_num3(sum(shift[d]["attention_shift"][k] for d in measured[k]) / len(measured[k]) if measured[k]
                      else None) for k in shift_keys]
    rows.append("| **average** | " + " | ".join(avg) + " |")
    lines = [header, rule, *rows]
    if shift_keys:
        lines += ["", "Accuracy in top-1 %. Attention shift: the mean L2 distance between the model's text-guided "
                  "attention map for the true class on the clean and on the adversarial image of that column, over "
                  "the samples it attacked (the smaller, the less the attack moved the attention); – where "
                  "the model classified no image of the dataset correctly, so that nothing was attacked."]
        partial = {k: v for k, v in measured.items() if len(v) < len(first["datasets"])}
        if partial:
            lines[-1] += " The average shift is over the datasets where every model has one: " + "; ".join(
                f"{k}: {', '.join(os.path.basename(d.rstrip('/')) for d in v) or 'none'}" for k, v in partial.items()) + "."
    return "\n".join(lines) + "\n"
