#!/bin/bash
# GPU check of real-image training speed (benchmarks/gpu_check_images.py; its docstring has the
# carry/command recipe for a lent GPU machine). Everything printed also goes to $OUT/log (or
# /tmp/log), so the progress lines survive a timeout.
#
#   FASHION_MNIST_DIR=DIR bash benchmarks/gpu_check_images.sh [SECONDS [OPTIONS…]]
#
# SECONDS: stop after this long (default 480); OPTIONS go to the Python script (e.g. --tiny).
set -o pipefail
cd "$(dirname "$0")/.."
DEST=${OUT:-/tmp}
LOG=$DEST/log
export PYTHONPATH=$PWD:${PYTHONPATH:-/tmp/site} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}  # the interpreter with torch (the device image's python3)
{
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
T0=$(date +%s)
timeout "${1:-480}" $PY benchmarks/gpu_check_images.py --json "$DEST/gpu_check_images.json" "${@:2}"
echo "gpu_check_images rc=$? wall=$(( $(date +%s) - T0 ))s"
} 2>&1 | tee "$LOG"
