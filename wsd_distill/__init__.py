"""wsd-distill: multi-label classification by distillation from weakly-supervised detection.

Importing the package registers the builtin datasets and the meta-architectures with
detectron2's catalogs and registries. The FutureWarning that detectron2 0.7's import gives under
torch 2.14 (``torch.jit.script_if_tracing``), which says nothing to a user, is silenced while
the package imports detectron2, and only then: the process's warning filters are left as they
were.

Importing it first (as every tool does) also shortens the wait of torch's CPU threads before
torch loads, unless the environment sets ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``: see
``OPENMP_DEFAULTS``.
"""

import os
import warnings

# libgomp, the OpenMP of torch's Linux wheels, lets each CPU thread spin 300,000 times at every
# barrier before it sleeps. On a busy machine (a second training, a browser) the spinning threads
# fight the other processes for the cores: a training step 7-21 times slower. A thousand spins
# cost 10% on a quiet machine (docs/benchmarks.md, "A busy machine"). Read when torch loads.
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "1000"}
if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ.update(OPENMP_DEFAULTS)

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
    )
    from . import data, modeling  # noqa: F401  (registers datasets, models)

from .config import add_wsd_distill_config, check_config  # noqa: E402

__all__ = ["add_wsd_distill_config", "check_config"]
