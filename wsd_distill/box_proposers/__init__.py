"""Proposal generators: EdgeBoxes and selective search (opencv-contrib), and any detectron2
model's boxes."""

from .detectron2_proposer import Detectron2Proposer
from .edge_boxes import EdgeBoxes
from .postprocess import postprocess_proposals
from .selective_search import SelectiveSearch

PROPOSAL_METHODS = {
    "edge_boxes": EdgeBoxes,
    "selective_search": SelectiveSearch,
    "detectron2": Detectron2Proposer,
}


def build_box_proposer(method, **kwargs):
    """A box proposer by name (a key of ``PROPOSAL_METHODS``); kwargs go to its class."""
    if method not in PROPOSAL_METHODS:
        raise ValueError(
            f"Unknown proposal method {method!r}; choose from {sorted(PROPOSAL_METHODS)}"
        )
    return PROPOSAL_METHODS[method](**kwargs)


__all__ = [
    "Detectron2Proposer",
    "EdgeBoxes",
    "SelectiveSearch",
    "build_box_proposer",
    "postprocess_proposals",
    "PROPOSAL_METHODS",
]
