from ..utils.ragged_store import RaggedStore, RaggedStoreWriter
from . import datasets  # noqa: F401  (registers the builtin datasets)
from .build import get_multilabel_dataset_dicts, num_classes_of, thing_classes_of
from .mapper import MultiLabelDatasetMapper
from .proposals import (
    load_mat_proposals,
    load_proposals_into_dataset,
    read_proposals,
    save_proposals,
)
