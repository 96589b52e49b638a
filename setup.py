from setuptools import find_packages, setup

setup(
    name="wsd_distill",
    version="0.1.0",
    description="Multi-label classification by distillation from weakly-supervised detection, "
    "as a Detectron2 extension",
    packages=find_packages(include=["wsd_distill", "wsd_distill.*"]),
    python_requires=">=3.9",
    # detectron2 is installed separately (see README: official build, or
    # tools/install_detectron2.py)
    install_requires=[
        "numpy",
        "opencv-contrib-python-headless",
        "pycocotools",
        "scipy",
        "h5py",
        "tqdm",
        "matplotlib",
    ],
)
