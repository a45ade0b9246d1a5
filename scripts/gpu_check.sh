#!/usr/bin/env bash
# GPU check (issue 15), one command, under 8 minutes on one H100/H200, no network, no downloads:
#   scripts/gpu_check.sh               bf16 full finetuning of Qwen2.5-0.5B's shape (random weights) through w2s
#                                      vs a bare loop (tokens/s, MFU, peak CUDA memory), then a one-GPU ladder run
#   scripts/gpu_check.sh --cpu-smoke   the same parts on CPU with a tiny model (also: W2S_GPU_CHECK_SMOKE=1)
# Figures: $OUT (default ./gpu_check_out)/gpu_check.json, the printed table in $OUT/gpu_check.txt, each part's
# stderr in $OUT/<part>.log. Each part has its own timeout; the exit status is non-zero if any part failed.
set -uo pipefail
SMOKE="${W2S_GPU_CHECK_SMOKE:-0}"
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
OUT="${OUT:-./gpu_check_out}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"  # relative to where it was called from
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_PROGRESS_BARS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's w2s, whatever is installed
WORK="$(mktemp -d "${TMPDIR:-/tmp}/w2s-gpu-check.XXXXXX")"  # ladder artifacts (GBs of weights) stay out of $OUT
trap 'rm -rf "$WORK"' EXIT
PY="${PYTHON:-python}"  # the train.py of the ladder runs under the same interpreter (sys.executable)
ARGS=(--out "$OUT")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke)
# seconds per part: probe 15 + throughput (model build, two timed sides) 240 + ladder 180 + report 15, and at
# most 10 s of --kill-after for each of the two long parts: 470 < 480
T_PROBE=15 T_THROUGHPUT=240 T_LADDER=180 T_REPORT=15
STATUS=()

part() {  # part NAME SECONDS [ARGS]: one part under its timeout; logs its wall time and exit status
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" "$PY" scripts/gpu_check.py "$name" "${ARGS[@]}" "$@" 2>"$OUT/$name.log"
  rc=$?
  echo "== $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -ne 0 ] && tail -n 20 "$OUT/$name.log"
  STATUS+=("$name=$rc")
}

main() {
  timeout "$T_PROBE" "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"gpus", torch.cuda.device_count())'
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  part throughput "$T_THROUGHPUT"
  part ladder "$T_LADDER" --work "$WORK"
  echo "== report"
  timeout "$T_REPORT" "$PY" scripts/gpu_check.py report "${ARGS[@]}" --status "${STATUS[@]}"
  for s in "${STATUS[@]}"; do [ "${s#*=}" = 0 ] || return 1; done
}

main 2>&1 | tee "$OUT/gpu_check.txt"
