#!/usr/bin/env bash
# `make gpu-wheels`: on a machine with the package registry, the wheels `make gpu-check` needs on
# an offline GPU machine that has its own Python 3.12 and torch (with numpy, OpenCV, scipy,
# matplotlib, tabulate, tqdm, pytest): cp312 manylinux x86-64 wheels of detectron2 (the PyPI
# sal-detectron2 wheel renamed py3-none-any, as tools/install_detectron2.py does) and of what
# `import wsd_distill` and the tests need beyond that, into .whl/ (ignored by git; about 8 MB).
# dev/gpu_check.sh installs them with pip --no-index --no-deps --target when it finds them.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=.whl
rm -rf "$out" && mkdir -p "$out"
platform=(--python-version 3.12 --implementation cp --only-binary=:all:)
for tag in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platform+=(--platform "$tag")
done
"$py" -m pip download -q --no-deps "${platform[@]}" -d "$out" \
    pycocotools yacs 'omegaconf>=2.1,<2.4' 'hydra-core>=1.1' 'termcolor>=1.1'
# pure-Python packages published as source only: built into wheels here
"$py" -m pip wheel -q --no-deps -w "$out" fvcore iopath antlr4-python3-runtime==4.9.3
tmp=$(mktemp -d)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 -d "$tmp" \
    sal-detectron2==0.7.2
for wheel in "$tmp"/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1-2)
    mv "$wheel" "$out/$name-py3-none-any.whl"
done
rm -rf "$tmp"
ls -l "$out"
