"""Reading pickles that other people made (proposal files, detectron2 model-zoo weights)
without running their code: only plain data is rebuilt."""

import pickle
import re

# what a detectron2 proposal pickle or a model-zoo .pkl holds besides built-in types: NumPy
# arrays, scalars and dtypes, ordered dicts, and detectron2's BoxMode
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # (pickle protocol 5)
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
    ("detectron2.structures.boxes", "BoxMode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than plain data."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in SAFE_GLOBALS:
            raise UnsafePickleError(
                f"it asks for {module}.{name}, which a pickle of plain data (arrays, lists, "
                f"dicts, numbers) does not: refused, nothing of it was run"
            )
        return super().find_class(module, name)


def load_data_pickle(f, path, encoding="latin1"):
    """``pickle.load`` of the open binary file ``f`` (the file ``path``, for the message),
    rebuilding only ``SAFE_GLOBALS`` besides built-in types; anything else is refused with a
    ValueError naming the file."""
    try:
        return _DataUnpickler(f, encoding=encoding).load()
    except UnsafePickleError as e:
        raise ValueError(f"{path}: {e}") from None


def refusal(error):
    """The global that ``torch.load(weights_only=True)`` refused in a file, e.g. "the global
    posix.system": torch words it "Unsupported global: GLOBAL print was not an allowed global"
    or "Trying to load unsupported GLOBAL posix.system whose module posix is blocked" (the rest
    of its message is advice to load the file unsafely); None when the file is not a pickle at
    all (cut short, or another format)."""
    found = re.search(r"unsupported global:?\s+(?:global\s+)?([\w.]+)", str(error), re.I)
    return f"the global {found.group(1)[:200]}" if found else None
