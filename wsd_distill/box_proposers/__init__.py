"""Proposal generators (opencv-contrib): EdgeBoxes and selective search."""

from .edge_boxes import EdgeBoxes
from .postprocess import postprocess_proposals
from .selective_search import SelectiveSearch

PROPOSAL_METHODS = {"edge_boxes": EdgeBoxes, "selective_search": SelectiveSearch}


def build_box_proposer(method, **kwargs):
    """A box proposer by name ("edge_boxes" or "selective_search"); kwargs go to its class."""
    if method not in PROPOSAL_METHODS:
        raise ValueError(
            f"Unknown proposal method {method!r}; choose from {sorted(PROPOSAL_METHODS)}"
        )
    return PROPOSAL_METHODS[method](**kwargs)


__all__ = [
    "EdgeBoxes",
    "SelectiveSearch",
    "build_box_proposer",
    "postprocess_proposals",
    "PROPOSAL_METHODS",
]
