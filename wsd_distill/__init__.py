"""wsd-distill: multi-label classification by distillation from weakly-supervised detection.

Importing the package registers the builtin datasets and the meta-architectures with
detectron2's catalogs and registries. The FutureWarning that detectron2 0.7's import gives under
torch 2.14 (``torch.jit.script_if_tracing``), which says nothing to a user, is silenced while
the package imports detectron2, and only then: the process's warning filters are left as they
were.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
    )
    from . import data, modeling  # noqa: F401  (registers datasets, models)

from .config import add_wsd_distill_config, check_config  # noqa: E402

__all__ = ["add_wsd_distill_config", "check_config"]
