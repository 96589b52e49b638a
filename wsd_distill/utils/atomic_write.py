"""Writing a file so that readers see either the old file or the whole new one, and never
through a link planted in a folder a tool writes into."""

import os


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it
    to ``path``: readers (and a run resumed after a crash or a full disk) see either the old
    file or the whole new one, never a cut one; the temporary file is removed on error. The
    temporary file is made anew (a link or file planted at its name is refused, never written
    through), and a link at ``path`` is replaced, not followed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    exclusive = os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        f = open(tmp, "wb", opener=lambda name, flags: os.open(name, flags | exclusive, 0o644))
    except FileExistsError:
        raise FileExistsError(
            f"{tmp} exists (a link or a file this process did not make): remove it to write {path}"
        ) from None
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    atomic_write(path, lambda f: f.write(data))


def refuse_links(folder):
    """Refuse to write into ``folder`` when a symbolic link lies in it, at any depth (the
    folder itself may be one: the user named it): a run or output folder someone sent could
    otherwise make a tool write outside it (its log.txt, config.yaml, a sub-folder)."""
    for root, folders, files in os.walk(folder):  # (links to folders are listed, not followed)
        for name in folders + files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                raise ValueError(
                    f"{path} is a symbolic link (to {os.readlink(path)}): tools never write "
                    f"through links in the folder they write into ({folder}); remove it"
                )
