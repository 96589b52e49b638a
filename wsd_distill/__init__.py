"""wsd-distill: multi-label classification by distillation from weakly-supervised detection.

Importing the package registers the builtin datasets with detectron2's catalogs.
"""
from . import data  # noqa: F401  (registers the builtin datasets)
from .config import add_wsd_distill_config

__all__ = ["add_wsd_distill_config"]
