"""What the pipeline refuses before it makes proposals or trains: held-out splits that share
images with the training set or each other, and unlabeled photos that are held-out ones."""

import os

from detectron2.data import DatasetCatalog

from ..utils.digests import photo_sha1


def check_held_out(train, val, test):
    """Refuse held-out datasets that are, or share photos with (by their bytes: a copy under
    another name is the same photo), the training set or each other: the numbers would be the
    training set's, or the student chosen on val would be chosen on the test set."""
    if val and val == test:
        raise ValueError(
            f"'{val}' is both --val and --test: the student chosen on val would be chosen on "
            f"the test set; give a held-out split of its own"
        )
    photos = {name: photo_digests(name) for name in filter(None, (train, val, test))}
    pairs = [(train, val, "the training set"), (train, test, "the training set")]
    pairs.append((val, test, "the val split (the student would be chosen on test images)"))
    for first, second, what in pairs:
        if not first or not second:
            continue
        shared = [photos[second][k] for k in photos[second] if k in photos[first]]
        if shared:
            raise ValueError(
                f"Dataset '{second}' shares {len(shared)} image files with {what} '{first}' "
                f"({', '.join(shared[:3])}, ...; the same bytes): a held-out split must hold "
                "other images"
            )


def check_unlabeled_held_out(unlabeled, held_out):
    """Refuse unlabeled images (the dataset ``unlabeled``) that are, by their bytes, images of
    the held-out datasets ``held_out`` (names): the student would distil on its val or test
    photos under another name."""
    digests = {}
    for name in filter(None, held_out):
        digests.update({k: (name, f) for k, f in photo_digests(name).items() if k not in digests})
    shared = [(f, *digests[k]) for k, f in photo_digests(unlabeled).items() if k in digests]
    if shared:
        photo, name, copy = shared[0]
        raise ValueError(
            f"Unlabeled dataset '{unlabeled}': {photo} is {copy} of '{name}' (the same bytes), "
            f"and {len(shared) - 1} more: photos of a held-out split cannot be trained on"
        )


def photo_digests(name):
    """{SHA-1 of a photo's bytes: its file} of the dataset ``name`` (the first of copies; a
    missing file is left to the dataset checks, which name it with the others)."""
    digests = {}
    for d in DatasetCatalog.get(name):
        if os.path.isfile(d["file_name"]):
            digests.setdefault(photo_sha1(d["file_name"]), d["file_name"])
    return digests
