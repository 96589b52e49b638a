#!/usr/bin/env bash
# `make gpu-check`: on a machine with an NVIDIA GPU, the CUDA tests (tests/test_cuda.py, marked
# cuda) and the benchmark at the paper's sizes: dev/benchmark_training.py --parts paper (the
# Trainer's steps of the VGG-16 teacher at 672 with 500 proposals, the student at 224 and the KD
# stages, batch 32, fp32 and AMP; cache_mapping: the cache writer's image mapping on one core;
# own_data: the own-data configs, from scratch and the pretrained EfficientNet-Lite0 pair)
# and dev/benchmark_inference.py --parts paper jpeg_to_scores (inference at batch 1 and 32;
# JPEG files to the student's scores through the test loader).
# Both run even if the other fails; the exit status is non-zero if either did.
# Python: $GPU_PYTHON, else .venv's, else python3 (a machine's own torch is never reinstalled).
# Offline: where detectron2 is not importable, the wheels of `make gpu-wheels` in .whl/ are
# installed into .whl/site (pip --no-index --no-deps --target).
# Output in $GPU_CHECK_OUT (output/gpu_check): environment.txt, cuda_tests.log, training/paper.md,
# training/cache_mapping.md, training/own_data.md, inference/paper.md, inference/jpeg_to_scores.md (and .json).
set -u
cd "$(dirname "$0")/.."
py=${GPU_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=${GPU_CHECK_OUT:-output/gpu_check}
mkdir -p "$out"
if ! "$py" -c "import detectron2" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "make gpu-check: no detectron2; run make gpu-wheels \
on a machine with the package registry and bring .whl/ here"; exit 1; }
    "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target .whl/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" -c "import sys, torch; sys.exit(None if torch.cuda.is_available() else \
'make gpu-check: torch ' + torch.__version__ + ' sees no CUDA device')" || exit 1
"$py" -c "import platform, torch, torchvision, detectron2; p = torch.cuda.get_device_properties(0)
print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB; CUDA {torch.version.cuda}; Python '
      f'{platform.python_version()}, torch {torch.__version__}, torchvision '
      f'{torchvision.__version__}, detectron2 {detectron2.__version__}')" \
    | tee "$out/environment.txt"
status=0
set -o pipefail
"$py" -m pytest -q -m cuda -rs -p no:cacheprovider tests 2>&1 | tee "$out/cuda_tests.log" \
    || status=1
"$py" dev/benchmark_training.py --device cuda --parts paper cache_mapping own_data \
    --output "$out/training" || status=1
"$py" dev/benchmark_inference.py --device cuda --parts paper jpeg_to_scores --workers 8 \
    --output "$out/inference" || status=1
exit $status
