"""File helpers: atomic writes, the ragged store, resumable chunked jobs."""

from .atomic_write import atomic_write, atomic_write_bytes, refuse_links
from .ragged_store import RaggedStore, RaggedStoreWriter, is_ragged_store
