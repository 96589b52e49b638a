from .checkpointer import FiniteCheckpointer, UnreadableCheckpointError
from .rng_state_hook import RNGStateHook
from .trained_weights import load_trained_weights
