"""wsd-distill: multi-label classification by distillation from weakly-supervised detection.

Importing the package registers the builtin datasets and the meta-architectures with
detectron2's catalogs and registries. It also silences two messages of detectron2 0.7 under
torch 2.14 that say nothing to a user, by message and category only (every tool imports the
package first, ``# isort: skip``, for this): the FutureWarning of ``torch.jit.script_if_tracing``
at import, and torch.fx's log warning at each ``is_fx_tracing()`` call of ROIPooler.
"""

import logging
import warnings

warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
logging.getLogger("torch.fx._symbolic_trace").addFilter(
    lambda record: not record.getMessage().startswith("is_fx_tracing will return true")
)

from . import data, modeling  # noqa: E402, F401  (registers datasets, models)
from .config import add_wsd_distill_config, check_config  # noqa: E402

__all__ = ["add_wsd_distill_config", "check_config"]
