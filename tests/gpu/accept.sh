#!/bin/bash
# The GPU acceptance run (issue 27): every model kind and objective for 20 iterations under the
# defaults, the same with the step graph and per-network CUDA graphs, the gpu-marked tests, and the
# benchmark rows that decide the CUDA defaults (tests/gpu/accept.py says what each part does).
# Fits one device call: an 8-minute budget (ACCEPT_BUDGET seconds), results written as they come.
#
# Here, once (the GPU image has torch but not albumentations and its needs):
#   bash docs/gpu_wheels.sh                       # -> .whl/, ignored by git
# On the device, from the repository root, with `carry: [".whl"]`:
#   bash tests/gpu/accept.sh "$OUT" [info defaults fast tests rows]
# Exit status: 0 all ran and passed, 1 something failed, 2 a part did not run for lack of time.
set -u
OUT=${1:?usage: accept.sh OUTDIR [part ...]}; shift
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
python3 tests/gpu/accept.py "$OUT" "$@" 2>&1 | tee -a "$OUT/accept.log"
exit "${PIPESTATUS[0]}"
