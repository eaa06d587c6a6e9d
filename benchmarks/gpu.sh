#!/usr/bin/env bash
# The GPU day in one command: every GPU figure the roadmap asks for, in at most 8 minutes of wall time
# on one H100/H200-class GPU, offline (models built from configs, random weights, generated images).
#
#   bash benchmarks/gpu.sh                 # on the GPU: benchmarks/results/gpu/results.json + BENCHMARKS.md
#   bash benchmarks/gpu.sh --smoke         # on CPU, tiny settings, under 2 minutes: checks the script
#   bash benchmarks/gpu.sh --out DIR --docs FILE --budget SECONDS --limit_scale N
#
# Sections, each in its own process under its own time limit (its budget, cut to what is left of the
# whole budget; a section that would start with less than MIN_SECTION_S left is skipped with a note):
# env, ratio_eager, memory, eval, e2e, ratio_compiled (last: it gets all the time that is left).
# Each section writes its part of the results file before the next starts, so a section that fails or
# runs out of time loses only its own figures; the table in --docs is rendered from whatever is there.
# --limit_scale multiplies every section's limit (the tests' smoke run, on a shared machine).
# Exit status: 0 when every section passed, 1 when one failed, ran out of time or was skipped (each
# named on an `error:` line), 2 for bad arguments or a broken installation.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=""
DOCS=""
BUDGET=""
SCALE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --out) OUT=${2:?--out needs a folder}; shift ;;
        --docs) DOCS=${2:?--docs needs a file}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
        --limit_scale) SCALE=${2:?--limit_scale needs a whole number}; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (use --smoke, --out DIR, --docs FILE, --budget SECONDS," \
                "--limit_scale N)" >&2; exit 2 ;;
    esac
    shift
done

PY=${PYTHON:-python}
if [ "$SMOKE" = 1 ]; then
    OUT=${OUT:-benchmarks/results/gpu-smoke}
    DOCS=${DOCS:-$OUT/BENCHMARKS.md}
    BUDGET=${BUDGET:-110}
    # seconds per section on CPU with tiny settings (each about 3 to 20 s on 2 cores)
    declare -A LIMIT=([env]=30 [ratio_eager]=40 [memory]=50 [eval]=50 [e2e]=60 [ratio_compiled]=60)
    SMOKE_FLAG=(--smoke)
else
    OUT=${OUT:-benchmarks/results/gpu}
    DOCS=${DOCS:-BENCHMARKS.md}
    BUDGET=${BUDGET:-450}  # 7.5 min: the 8-minute slot, less the report and a margin
    declare -A LIMIT=([env]=30 [ratio_eager]=60 [memory]=120 [eval]=60 [e2e]=75 [ratio_compiled]=120)
    SMOKE_FLAG=()
fi
case "$BUDGET" in ''|*[!0-9]*) echo "error: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac
case "$SCALE" in ''|0|*[!0-9]*) echo "error: --limit_scale must be a whole number >= 1, got '$SCALE'" >&2; exit 2 ;; esac
MIN_SECTION_S=10
SECTIONS=(env ratio_eager memory eval e2e ratio_compiled)

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$SECONDS

# --- installs: nothing is downloaded; the package from this checkout when it is not importable --------
missing=$("$PY" - <<'EOF'
import importlib.util
need = ["torch", "transformers", "accelerate", "datasets", "safetensors", "yaml", "PIL", "numpy"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
) || { echo "error: $PY cannot run (set PYTHON to the interpreter to use)" >&2; exit 2; }
if [ -n "$missing" ]; then
    echo "error: not installed: $missing. Install them first (pip install -e \".[dev]\" where a package index" \
         "is reachable, or pip install --no-index --find-links WHEELS_DIR ...); the GPU machine downloads nothing." >&2
    exit 2
fi
if ! "$PY" -c "import tgazsr" 2>/dev/null; then
    echo "gpu.sh: installing tgazsr from this checkout (no dependencies, no download)"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . \
        || { echo "error: installing tgazsr from $PWD failed (pip install --no-deps -e .)" >&2; exit 2; }
fi

mkdir -p "$OUT"
RESULTS="$OUT/results.json"
rm -f "$RESULTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tgazsr-gpu-day.XXXXXX")  # models and data: several GB, never kept
trap 'rm -rf "$WORK"' EXIT
echo "gpu.sh: results in $RESULTS, table in $DOCS, budget ${BUDGET} s (installs took $((SECONDS - START)) s)"

FAILED=()
for i in "${!SECTIONS[@]}"; do
    name=${SECTIONS[$i]}
    left=$((BUDGET - (SECONDS - START)))
    limit=$((${LIMIT[$name]} * SCALE))
    if [ "$i" -eq $((${#SECTIONS[@]} - 1)) ] && [ "$left" -gt "$limit" ]; then limit=$left; fi
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    if [ "$limit" -lt "$MIN_SECTION_S" ]; then
        echo "error: section $name skipped: ${left} s left of the ${BUDGET} s budget" >&2
        FAILED+=("$name")
        "$PY" benchmarks/gpu_run.py note "$name" --results "$RESULTS" --status skipped --limit_s "$((left > 0 ? left : 0))" \
            --message "skipped: ${left} s left of the ${BUDGET} s budget"
        continue
    fi
    echo "== section $name (limit ${limit} s)"
    begun=$SECONDS
    status=0
    timeout --kill-after=15 "$limit" "$PY" benchmarks/gpu_run.py "$name" --results "$RESULTS" "${SMOKE_FLAG[@]}" \
        --work "$WORK" 2>&1 | tee "$OUT/$name.log" || status=${PIPESTATUS[0]}
    took=$((SECONDS - begun))
    if [ "$status" -eq 0 ]; then
        state=ok; message=""
    elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        state=timeout; message="stopped at its ${limit} s limit; log: $OUT/$name.log"
        echo "error: section $name ran out of its ${limit} s limit after ${took} s (its figures so far are kept; log: $OUT/$name.log)" >&2
    else
        state=failed; message="exit status $status; log: $OUT/$name.log"
        echo "error: section $name failed with exit status $status after ${took} s (log: $OUT/$name.log; last lines:)" >&2
        tail -n 5 "$OUT/$name.log" >&2
    fi
    [ "$state" = ok ] || FAILED+=("$name")
    "$PY" benchmarks/gpu_run.py note "$name" --results "$RESULTS" --status "$state" --seconds "$took" \
        --limit_s "$limit" --message "$message"
    if [ "$name" = env ] && [ "$state" != ok ]; then
        echo "error: section env failed: no other section can run (see $OUT/env.log)" >&2
        for rest in "${SECTIONS[@]:1}"; do
            "$PY" benchmarks/gpu_run.py note "$rest" --results "$RESULTS" --status skipped --message "skipped: env failed"
            FAILED+=("$rest")
        done
        break
    fi
done

"$PY" benchmarks/gpu_report.py "$RESULTS" --docs "$DOCS" --seconds "$((SECONDS - START))"
echo "gpu.sh: $((SECONDS - START)) s in all"
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "error: sections that did not finish or did not run: ${FAILED[*]} (the table names each; results in" \
         "$RESULTS)" >&2
    exit 1
fi
