"""Datasets declared in a config (``DATASETS.REGISTER``), so that no tool needs Python to use
a user's own data."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_multilabel import register_coco_multilabel
from .label_list import LIST_EXTENSIONS, register_label_list

FORMATS = "a COCO json (.json) or a label list (.csv, .tsv, .txt)"


def register_declared_datasets(entries):
    """Register each ``[name, annotation_file, image_root]`` (or ``[..., class_file]`` for a
    label list) of ``DATASETS.REGISTER``; the annotation file's extension says its format:
    ``.json`` a COCO instances json (boxes optional, see ``load_coco_multilabel_json``),
    ``.csv``/``.tsv``/``.txt`` a label list (``label_list``). A name registered already with
    the same files is left as it is (tools set up a config more than once); with other files,
    or a builtin name, it is an error."""
    for entry in entries:
        entry = [str(x) for x in entry]
        if len(entry) not in (3, 4):
            raise ValueError(
                f"DATASETS.REGISTER: each entry is [name, annotation_file, image_root] or "
                f"[name, label_list, image_root, class_file], got {entry}"
            )
        name, annotation_file, image_root = entry[:3]
        class_file = entry[3] if len(entry) == 4 else ""
        extension = os.path.splitext(annotation_file)[1].lower()
        key = "json_file" if extension == ".json" else "list_file"
        if name in DatasetCatalog:
            metadata = MetadataCatalog.get(name)
            if (metadata.get(key), metadata.get("image_root")) != (annotation_file, image_root):
                raise ValueError(
                    f"DATASETS.REGISTER: dataset '{name}' is registered already, with other "
                    f"files ({metadata.get(key) or 'builtin'}): choose another name"
                )
            continue
        for path in (annotation_file, image_root, class_file):
            if path and not os.path.exists(path):
                raise FileNotFoundError(f"DATASETS.REGISTER, dataset '{name}': no {path}")
        if extension == ".json" and not class_file:
            register_coco_multilabel(name, annotation_file, image_root)
        elif extension in LIST_EXTENSIONS:
            register_label_list(name, annotation_file, image_root, class_file)
        else:
            raise ValueError(
                f"DATASETS.REGISTER, dataset '{name}': {annotation_file} is not {FORMATS}"
                + (" (a class file goes with a label list only)" if class_file else "")
            )
