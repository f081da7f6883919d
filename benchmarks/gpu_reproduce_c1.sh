#!/bin/bash
# GPU check of `remedies reproduce` on C1 at CIFAR-10's size (issue 14), for a lent GPU machine.
#
# Where CIFAR-10 itself is at hand, point data.path at it instead of the stand-in. Where Ray,
# MLflow, Optuna and pydantic are not installed, install their wheels into /tmp/site first (the
# device tool's README) and this script puts /tmp/site on PYTHONPATH. Everything it prints also
# goes to $OUT/log (or ./gpu_check.log), so the progress lines survive a timeout.
#
#   CIFAR_ROOT=DIR bash benchmarks/gpu_reproduce_c1.sh [SECONDS [REPRODUCE OPTIONS…]]
#
# DIR holds cifar-10-batches-py/ (the real data set; default /tmp/cifar, where the synthetic
# stand-in is written if nothing is there); reproduce is stopped after SECONDS (250); further
# options go to `remedies reproduce` (e.g. --no-side-by-side, --seeds 5 --epochs 100).
set -o pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-.}/log
DEST=${OUT:-.}/rep
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}  # the interpreter with torch (the device image's python3)
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, ray; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__)"
ROOT=${CIFAR_ROOT:-/tmp/cifar}
[ -d "$ROOT/cifar-10-batches-py" ] || $PY benchmarks/cifar_standin.py --root "$ROOT"
T0=$(date +%s)
timeout "${1:-250}" $PY -m remedies reproduce --nets C1 --data cifar10 \
  --set data.path="$ROOT" --seeds 1 --epochs 2 --warm-k 0,1 --jobs 4 --out "$DEST" \
  --report "$DEST/report.md" --tracking-uri sqlite:////tmp/rep.db "${@:2}" 2>&1 | grep --line-buffered -E "runs|wrote|held|ran out"
echo "reproduce rc=$? wall=$(( $(date +%s) - T0 ))s"
[ -f "$DEST/results.json" ] && $PY - "$DEST/results.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"{r['name']:24s} {r['device']:6s} batch {r['batch_size']:5d}: train "
          f"{r['train_time_s'] / max(1, r['epochs_run']):.2f} s/epoch, measures "
          f"{r['measure_time_s']:.1f} s ("
          + ", ".join(f"{d['key']} {d.get('wall_time_s', 0):.0f}" for d in r["details"]) + ")")
PY
} 2>&1 | tee "$LOG"
