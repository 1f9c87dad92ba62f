#!/usr/bin/env bash
# GPU suite (issue 17, part 2): every GPU figure of the project in one go, on one H100/H200-class GPU, in <= 9 min.
#
#   bash scripts/gpu_suite.sh [--dry-run] [--steps LIST] [--data DIR] [--wheels DIR] [--python PY] OUTDIR
#
# Steps (each with its own time limit; a step that fails or runs out of time is recorded and the suite goes on):
#   1. pytest -m gpu                     the CUDA-only tests
#   2. benchmark_quality.py              basic_unet, xnet, xnet + instance norm, lite_unet at 256 px / 60 epochs
#                                        (the four trainings run at once, beside step 1; JSRT test + OpenIST Dice)
#   3. benchmark_training.py             (a) CPU data path, (b) device data path, (c) bare loop at 256², batch 16,
#                                        elastic on (bundle default), 60 epochs: images/s, (a)/(c), (b)/(c),
#                                        seconds to validation Dice 0.97
#   4. benchmark_model.py                model-only images/s at 256², bf16, batch 256, BasicUNet / XNet / LiteUNet,
#                                        eager, channels-last and torch.compile + channels-last
#   5. benchmark_inference.py            --devices cuda at 2048², default outputs (decode / model / write shares)
# Steps 3-5 time things, so they run alone, after 1-2.
#
# Writes OUTDIR/raw/ (one log per step, the scripts' JSON, steps.tsv), OUTDIR/summary.md (the table it also prints)
# and OUTDIR/results.tar.gz (raw/ without checkpoints).
#
# --dry-run runs every step at a tiny size on the CPU (tiny networks, 32-64 px, one epoch, a few images), so the
# wiring is known to work on a machine without a GPU; its figures mean nothing. Its time limits are generous (20 min
# a step) so that it also finishes on a loaded machine.
# --steps LIST: comma-separated subset of quality,pytest,training,model,inference (default: all), e.g. to rerun one.
#
# --data DIR: folder holding jsrt_scr/ (with splits.csv) and openist_cxr/ (default: <repo>/outputs/gpu_suite/data,
# else <repo>/shared/data, else <repo>/../shared/data).
# --wheels DIR: wheels to install first (into a temporary folder put on PYTHONPATH) for packages the GPU machine lacks
# (default, except with --dry-run: <repo>/outputs/gpu_suite/wheels when it holds any). docs/performance.md says how
# to fetch them.
set -uo pipefail

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
DATA=""
WHEELS=""
PY="${PYTHON:-python3}"
OUTDIR=""
STEPS="quality,pytest,training,model,inference"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --steps) STEPS="${2:?--steps needs a list, e.g. quality,training}"; shift ;;
    --data) DATA="${2:?--data needs a folder}"; shift ;;
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
    --python) PY="${2:?--python needs an interpreter}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_suite: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$OUTDIR" ] || { echo "gpu_suite: one OUTDIR only, got $OUTDIR and $1" >&2; exit 2; }; OUTDIR="$1" ;;
  esac
  shift
done
[ -n "$OUTDIR" ] || { echo "gpu_suite: missing OUTDIR (see --help)" >&2; exit 2; }
for step in ${STEPS//,/ }; do
  case "$step" in
    quality|pytest|training|model|inference) ;;
    *) echo "gpu_suite: unknown step '$step' in --steps; use quality,pytest,training,model,inference" >&2; exit 2 ;;
  esac
done
wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

if [ -z "$DATA" ]; then
  for candidate in "$REPO/outputs/gpu_suite/data" "$REPO/shared/data" "$REPO/../shared/data"; do
    if [ -d "$candidate/jsrt_scr" ]; then DATA="$candidate"; break; fi
  done
fi
for sub in jsrt_scr openist_cxr; do
  if [ ! -d "${DATA:-/nonexistent}/$sub/images" ]; then
    echo "gpu_suite: ${DATA:-<no data folder>}/$sub/images not found; pass --data pointing at the folder holding" \
         "jsrt_scr/ and openist_cxr/" >&2
    exit 2
  fi
done
DATA="$(cd "$DATA" && pwd)"
mkdir -p "$OUTDIR/raw" || exit 2
OUTDIR="$(cd "$OUTDIR" && pwd)"
RAW="$OUTDIR/raw"
: > "$RAW/steps.tsv"

export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "$WHEELS" ] && [ "$DRY" = 0 ] && [ -d "$REPO/outputs/gpu_suite/wheels" ]; then
  WHEELS="$REPO/outputs/gpu_suite/wheels"  # the default only on the GPU machine: a dry run uses the local stack
fi
if [ -n "$WHEELS" ] && compgen -G "$WHEELS/*.whl" > /dev/null; then
  SITE="$(mktemp -d -t gpu_suite_site.XXXXXX)"
  echo "gpu_suite: installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || { echo "gpu_suite: installing the wheels in $WHEELS failed (see above)" >&2; exit 2; }
  export PYTHONPATH="$REPO:$SITE${PYTHONPATH#"$REPO"}"
fi
if ! "$PY" -c "import torch, monai.bundle, ignite, pydicom, highdicom, pipeline.data, pipeline.engines, pipeline.inference, pipeline.dicom" 2> "$RAW/imports.log"; then
  echo "gpu_suite: $PY cannot import the project's stack (see $RAW/imports.log); bring the missing packages as" \
       "wheels (--wheels, docs/performance.md)" >&2
  exit 2
fi
if [ "$DRY" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_suite: no CUDA device visible to $PY; run on a GPU machine, or use --dry-run to check the wiring" >&2
  exit 2
fi
cd "$REPO" || exit 2

# run_step NAME LIMIT_S COMMAND...: run with a time limit, log to raw/NAME.log, record the outcome in raw/steps.tsv
run_step() {
  local name="$1" limit="$2"; shift 2
  local start end rc status
  start=$(date +%s)
  echo "[$(date -u +%H:%M:%S)] $name: started (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" > "$RAW/$name.log" 2>&1
  rc=$?
  end=$(date +%s)
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status="failed(rc=$rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((end - start))" "$limit" >> "$RAW/steps.tsv"
  echo "[$(date -u +%H:%M:%S)] $name: $status after $((end - start)) s"
}

SUITE_START=$(date +%s)
GPU_TESTS=$(grep -rlE "pytest\.mark\.gpu|mark\.gpu" tests --include='*.py' | sort | tr '\n' ' ')
TINY_BASIC='{"features": [4, 4, 8, 16, 32, 4]}'
TINY_XNET='[4, 8, 16, 32]'
# name  network  constructor kwargs (GPU)  constructor kwargs (dry run)
QUALITY_RUNS=(
  "basic_unet|basic_unet|{}|$TINY_BASIC"
  "xnet|xnet|{}|{\"features\": $TINY_XNET}"
  "xnet_instance|xnet|{\"norm\": \"instance\"}|{\"norm\": \"instance\", \"features\": $TINY_XNET}"
  "lite_unet|lite_unet|{}|{\"features\": [4, 8, 16]}"
)

if [ "$DRY" = 1 ]; then
  echo "gpu_suite: DRY RUN on the CPU (tiny sizes; the figures mean nothing)"
  Q_ARGS=(--image-size 32 --max-epochs 1 --batch-size 8 --num-workers 0 --max-images 4)
  Q_LIMIT=1200; Q_THREADS=1; T_LIMIT=1200; M_LIMIT=1200; I_LIMIT=1200; P_LIMIT=1200
  T_ARGS=(--image-size 32 --epochs 1 --batch-size 8 --num-workers 0 --threads 1 --network-kwargs "$TINY_BASIC")
  M_ARGS=(--skip-gpu --image-size 64 --repeats 1 --cpu-threads 1)
  I_ARGS=(--devices cpu --sizes 256 --n 2 --workers 0 --network-kwargs "$TINY_BASIC")
else
  # Sizes for the 9-minute budget: steps 1+2 <= 170 s together, then 150 + 110 + 70 s, leaving ~40 s for start-up.
  Q_ARGS=(--image-size 256 --max-epochs 60 --batch-size 16 --num-workers 2)
  Q_LIMIT=170; Q_THREADS=4; T_LIMIT=150; M_LIMIT=110; I_LIMIT=70; P_LIMIT=170
  T_ARGS=(--image-size 256 --batch-size 16 --epochs 60 --num-workers 12 --target-dice 0.97)
  M_ARGS=(--skip-cpu --image-size 256 --dtypes bf16 --batch-sizes 256 --gpu-seconds 1.5
          --variants eager channels_last compile+channels_last)
  I_ARGS=(--devices cuda --sizes 2048 --n 32 --workers 8)
fi

# ---- steps 1 and 2: the quality trainings (in the background, at once) beside the CUDA-only tests ----
pids=()
wanted quality && for run in "${QUALITY_RUNS[@]}"; do
  IFS='|' read -r label network kwargs_gpu kwargs_dry <<< "$run"
  kwargs="$kwargs_gpu"; [ "$DRY" = 1 ] && kwargs="$kwargs_dry"
  run_step "quality_$label" "$Q_LIMIT" env OMP_NUM_THREADS="$Q_THREADS" "$PY" scripts/benchmark_quality.py \
    --data "$DATA" --networks "$network" --network-kwargs "$kwargs" "${Q_ARGS[@]}" --out "$RAW/quality_$label" &
  pids+=($!)
done
if ! wanted pytest; then
  :
elif [ -n "$GPU_TESTS" ]; then
  # shellcheck disable=SC2086  # GPU_TESTS is a list of paths without spaces
  run_step pytest_gpu "$P_LIMIT" "$PY" -m pytest -q -m gpu -p no:cacheprovider $GPU_TESTS
else
  printf 'pytest_gpu\tno tests marked gpu\t0\t0\n' >> "$RAW/steps.tsv"
fi
[ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"

# ---- steps 3-5: the timings, alone ----
wanted training && run_step training "$T_LIMIT" "$PY" scripts/benchmark_training.py --data "$DATA" --paths abc "${T_ARGS[@]}" \
  --out "$RAW/training.json"
wanted model && run_step model "$M_LIMIT" "$PY" scripts/benchmark_model.py --networks basic_unet xnet lite_unet "${M_ARGS[@]}" \
  --out "$RAW/model.json"
wanted inference && run_step inference "$I_LIMIT" "$PY" scripts/benchmark_inference.py "${I_ARGS[@]}" --json "$RAW/inference.json" \
  --workdir "$(mktemp -d -t gpu_suite_inference.XXXXXX)"

SUITE_SECONDS=$(( $(date +%s) - SUITE_START ))
"$PY" scripts/gpu_suite_summary.py "$RAW" --seconds "$SUITE_SECONDS" --dry-run "$DRY" | tee "$OUTDIR/summary.md"
tar -czf "$OUTDIR/results.tar.gz" --exclude='*.pt' -C "$OUTDIR" raw
echo "gpu_suite: done in $SUITE_SECONDS s; raw results in $RAW, table in $OUTDIR/summary.md, all in $OUTDIR/results.tar.gz"
! grep -qv $'\tok\t' "$RAW/steps.tsv"
