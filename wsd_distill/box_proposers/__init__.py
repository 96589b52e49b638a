"""Proposal generators: EdgeBoxes and selective search (opencv-contrib), and any detectron2
model's boxes, by name in ``BOX_PROPOSER_REGISTRY``."""

from detectron2.utils.registry import Registry

from .detectron2_proposer import Detectron2Proposer
from .edge_boxes import EdgeBoxes
from .postprocess import postprocess_proposals
from .selective_search import SelectiveSearch

BOX_PROPOSER_REGISTRY = Registry("BOX_PROPOSER")
BOX_PROPOSER_REGISTRY.__doc__ = """
Box proposers by method name (``tools/generate_proposals.py --method``; at inference a WSDDN's
generators, ``modeling/proposal_generator.py``): a function of keyword arguments
(``max_proposals``, ...) that returns a callable, BGR uint8 image [H, W, 3] -> (boxes float32
[N, 4] XYXY in its pixels, scores float32 [N]). Register yours with
``@BOX_PROPOSER_REGISTRY.register()``.
"""


@BOX_PROPOSER_REGISTRY.register()
def edge_boxes(**kwargs):
    return EdgeBoxes(**kwargs)


@BOX_PROPOSER_REGISTRY.register()
def selective_search(**kwargs):
    return SelectiveSearch(**kwargs)


@BOX_PROPOSER_REGISTRY.register()
def detectron2(**kwargs):
    return Detectron2Proposer(**kwargs)


def proposal_methods():
    """The names of the registered box proposers, sorted."""
    return sorted(name for name, _ in BOX_PROPOSER_REGISTRY)


def build_box_proposer(method, **kwargs):
    """A box proposer by name (``proposal_methods()``); kwargs go to it."""
    if method not in BOX_PROPOSER_REGISTRY:
        raise ValueError(f"Unknown proposal method {method!r}; choose from {proposal_methods()}")
    return BOX_PROPOSER_REGISTRY.get(method)(**kwargs)


__all__ = [
    "BOX_PROPOSER_REGISTRY",
    "Detectron2Proposer",
    "EdgeBoxes",
    "SelectiveSearch",
    "build_box_proposer",
    "postprocess_proposals",
    "proposal_methods",
]
