"""A folder of labelled photos as a multi-label dataset: a CSV or TSV list of images and labels.

One line per image, ``image<sep>label;label;...`` (``,`` in a ``.csv``, a tab in a ``.tsv`` or
``.txt``), the image path relative to the image root; a first line ``image<sep>labels`` is a
header. An image without labels has an empty second column. Classes come from a class file
(one name per line; the order gives the class indices) or, without one, are the labels found
in the list, sorted: give the same class file to every split of a dataset, so that a split
missing a class still has the same classes. Both are read as UTF-8, with or without the byte
order mark that spreadsheets write.
"""

import csv
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

from ...utils.plain_files import named_text_errors

logger = logging.getLogger(__name__)

LIST_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def read_class_file(path):
    """The class names of a class file, one per line (blank lines skipped), unique."""
    with PathManager.open(path, encoding="utf-8-sig") as f, named_text_errors(path):
        names = [line.strip() for line in f if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicates:
        raise ValueError(
            f"{path}: a class file lists each class name once, one per line"
            + (f" (repeated: {duplicates})" if duplicates else " (it is empty)")
        )
    return names


def read_label_list(list_file):
    """[(image path, [label names])] of a list file, in file order."""
    delimiter = LIST_EXTENSIONS.get(os.path.splitext(list_file)[1].lower())
    if delimiter is None:
        raise ValueError(f"{list_file}: a label list ends with one of {sorted(LIST_EXTENSIONS)}")
    with (
        PathManager.open(list_file, encoding="utf-8-sig", newline="") as f,
        named_text_errors(list_file),
    ):
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "labels"]:
        rows = rows[1:]
    other = [r[0] for r in rows if len(r) == 1 and ("\t" in r[0] or ";" in r[0])]
    if rows and all(len(r) == 1 for r in rows) and other:
        raise ValueError(
            f"{list_file}: every entry is one column (e.g. {other[0]!r}): in a "
            f"{os.path.splitext(list_file)[1]} list the image and its labels are separated by "
            f"{delimiter!r}, the labels among themselves by ';' "
            f"({', '.join(f'{e}: {d!r}' for e, d in LIST_EXTENSIONS.items())})"
        )
    entries = []
    for line, row in enumerate(rows, start=1):
        if len(row) > 2:
            raise ValueError(
                f"{list_file}, entry {line}: expected 'image{delimiter}label;label;...', got "
                f"{len(row)} columns ({row[:3]})"
            )
        labels = row[1].split(";") if len(row) > 1 else []
        entries.append((row[0].strip(), [n.strip() for n in labels if n.strip()]))
    return entries


def load_label_list(list_file, image_root, dataset_name, class_file="") -> list[dict]:
    """detectron2 dicts (``file_name``, ``image_id`` = the listed path, ``multi_labels``) of a
    label list; sets the dataset's ``thing_classes``. Entries with unknown labels (with a class
    file) or an image listed twice are all named in one error. Missing image files are found
    with every dataset's other problems (``data.build.dataset_problems``)."""
    entries = read_label_list(list_file)
    if class_file:
        classes = read_class_file(class_file)
    else:
        classes = sorted({n for _, names in entries for n in names})
    index = {c: i for i, c in enumerate(classes)}
    dicts, problems, seen = [], [], set()
    for line, (path, names) in enumerate(entries, start=1):
        unknown = sorted(set(names) - set(index))
        if unknown:
            problems.append(f"entry {line} ({path}): unknown classes {unknown}")
        if path in seen:
            problems.append(f"entry {line}: image {path} is listed twice")
        seen.add(path)
        labels = sorted({index[n] for n in names if n in index})
        file_name = os.path.join(image_root, path)
        dicts.append({"file_name": file_name, "image_id": path, "multi_labels": labels})
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        known = f" (the classes of {class_file})" if class_file else ""
        raise ValueError(f"{list_file}{known}:\n" + "\n".join(problems[:10]) + more)
    MetadataCatalog.get(dataset_name).set(thing_classes=classes)
    logger.info(
        f"{dataset_name}: {len(dicts)} images, {sum(not d['multi_labels'] for d in dicts)} "
        f"without labels, {len(classes)} classes (from {class_file or list_file})"
    )
    return dicts


def register_label_list(name, list_file, image_root, class_file="") -> None:
    """Register a label list (module docstring) as the multi-label dataset ``name``."""
    DatasetCatalog.register(name, lambda: load_label_list(list_file, image_root, name, class_file))
    metadata = {"thing_classes": read_class_file(class_file)} if class_file else {}
    MetadataCatalog.get(name).set(
        list_file=list_file,
        image_root=image_root,
        evaluator_type="multilabel",
        has_boxes=False,
        **metadata,
    )
