#!/usr/bin/env bash
# `make gpu-check`: on a machine with an NVIDIA GPU, the CUDA tests (tests/test_cuda.py, marked
# cuda) and the benchmark at the paper's sizes (tools/benchmark.py --parts paper: the VGG-16
# teacher at 672 with 500 proposals, the student at 224, batch 32); about 5 minutes on an H100.
# Both run even if the other fails; the exit status is non-zero if either did.
# Python: $GPU_PYTHON, else .venv's, else python3. Output: $GPU_CHECK_OUT (output/gpu_check).
set -u
cd "$(dirname "$0")/.."
py=${GPU_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=${GPU_CHECK_OUT:-output/gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" -c "import sys, torch; sys.exit(None if torch.cuda.is_available() else \
'make gpu-check: torch ' + torch.__version__ + ' sees no CUDA device')" || exit 1
"$py" -c "import torch; p = torch.cuda.get_device_properties(0); \
print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}')"
status=0
"$py" -m pytest -q -m cuda -rs -p no:cacheprovider tests || status=1
"$py" tools/benchmark.py --device cuda --parts paper --output "$out" || status=1
exit $status
