"""wsd-distill: multi-label classification by distillation from weakly-supervised detection.

Importing the package registers the builtin datasets and the meta-architectures with
detectron2's catalogs and registries.
"""

from . import data, modeling  # noqa: F401  (registers datasets, backbones, meta-architectures)
from .config import add_wsd_distill_config, check_config

__all__ = ["add_wsd_distill_config", "check_config"]
