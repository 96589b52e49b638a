"""What tells inputs apart by their content: SHA-1 digests of id lists and of files."""

import hashlib
import os

_FILE_SHA1 = {}  # (path, size, modification time) -> SHA-1: a file read again is not hashed again


def ids_digest(ids):
    """SHA-1 of a list of image ids (or keys): tells two datasets apart in a manifest or index."""
    return hashlib.sha1("\n".join(map(str, ids)).encode()).hexdigest()


def file_sha1(path):
    """SHA-1 of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def photo_sha1(path):
    """``file_sha1`` of a photo, what identifies it whatever its name (None when there is no
    file: the dataset checks name it); kept for this process while the file's size and
    modification time stay."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_SHA1:
        _FILE_SHA1[key] = file_sha1(path)
    return _FILE_SHA1[key]
