#!/usr/bin/env bash
# The GPU check in one command (issue 22): on a CUDA machine with no network,
#
#   bash benchmarks/gpu/check.sh [--budget-s 540] [--out DIR] [--wheels DIR] [--stages a,b]
#
# installs the wheels that benchmarks/gpu/prepare.sh downloaded (benchmarks/gpu/wheels) into a
# temporary folder on PYTHONPATH (the system Python is not touched), uses corr from this working
# tree, runs the CUDA tests and the speed benchmark (random weights) stage by stage within the
# budget, and writes gpu_check.json + gpu_check.log under --out (default $OUT, else
# out/gpu_check), the JSON rewritten after every stage. On a CPU machine,
# `bash benchmarks/gpu/check.sh --device cpu --tiny` runs the same stages with tiny models (the
# test tests/benchmarks/test_gpu_check.py does). PYTHON picks the interpreter (default python3).
# Relative paths are taken from the current folder; the stages run in the repository root.
# The stages are in benchmarks/gpu/check.py; README: benchmarks/README.md.
set -u
started=$(date +%s.%N)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec "${PYTHON:-python3}" "$here/check.py" --started-at "$started" "$@"
