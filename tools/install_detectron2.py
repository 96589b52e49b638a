#!/usr/bin/env python
"""Make ``import detectron2`` work in the current Python environment.

Uses an importable detectron2 when there is one (an official build from source, with its
CUDA ops). Otherwise installs FAIR's detectron2 Python code from the PyPI package
``sal-detectron2==0.7.2``: its wheel is tagged cp310 only, so it is downloaded, renamed to
a ``py3-none-any`` wheel and installed without its pinned dependencies (requirements.txt
lists them). Its bundled ``_C`` extension targets Python 3.10 and is never loaded:
wsd-distill takes ROIAlign and NMS from torchvision.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile

PACKAGE = "sal-detectron2==0.7.2"


def main():
    if importlib.util.find_spec("detectron2") is not None:
        import detectron2

        print(
            f"detectron2 {detectron2.__version__} already importable from {detectron2.__path__[0]}"
        )
        return
    pip = [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call(
            pip
            + [
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.10",
                "--dest",
                tmp,
                PACKAGE,
            ]
        )
        (wheel,) = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        name, version = wheel.split("-")[:2]
        renamed = os.path.join(tmp, f"{name}-{version}-py3-none-any.whl")
        os.rename(os.path.join(tmp, wheel), renamed)
        subprocess.check_call(pip + ["install", "--no-deps", renamed])


if __name__ == "__main__":
    main()
