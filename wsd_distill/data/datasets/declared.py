"""Datasets declared in a config (``DATASETS.REGISTER``), so that no tool needs Python to use
a user's own data."""

import os
import re

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_multilabel import register_coco_multilabel
from .image_folder import register_image_folder
from .label_list import LIST_EXTENSIONS, read_class_file, register_label_list
from .voc import VOC_CLASSES, register_voc_multilabel
from .yolo import YAML_EXTENSIONS, register_yolo

FORMATS = (
    "a COCO json (.json), a label list (.csv, .tsv, .txt), a VOC-style folder, a YOLO labels "
    "folder or an Ultralytics data.yaml"
)


def voc_year(folder):
    """The year of a VOC-style folder from its name, as detectron2's ``VOC2007`` / ``VOC2012``
    (2007 is scored with VOC 2007's 11-point AP50, as the builtin sets; WSODEvaluator's
    ap_metric chooses otherwise); 0 for any other name (all-point AP)."""
    match = re.fullmatch(r"VOC(\d{4})", os.path.basename(os.path.normpath(folder)))
    return int(match.group(1)) if match else 0


def register_declared_datasets(entries) -> None:
    """Register each entry of ``DATASETS.REGISTER``; the annotation file says the format:

    - ``[name, file.json, image_root]``: a COCO instances json (boxes optional, see
      ``load_coco_multilabel_json``);
    - ``[name, list.csv, image_root, class_file]``: a label list (``label_list``; ``.tsv``,
      ``.txt``: tab-separated; ``class_file`` optional, may be "");
    - ``[name, folder, split, class_file]``: a VOC-style folder (``Annotations/*.xml``,
      ``ImageSets/Main/<split>.txt``, ``JPEGImages/``), boxes and difficult flags included;
      ``class_file`` optional (default: VOC's 20 classes); a folder named ``VOC2007`` is
      scored with VOC 2007's 11-point AP50 (``voc_year``);
    - ``[name, data.yaml, split]``: an Ultralytics/YOLO dataset (``yolo``), boxes included;
    - ``[name, labels_folder, image_root, class_file]``: YOLO label files beside a folder of
      images, ``class_file`` a names file or a data.yaml;
    - ``[name, image_folder]``: photos without labels (``image_folder``), for a KD student's
      ``DATASETS.UNLABELED``.

    A name registered already with the same entry is left as it is (tools set up a config
    more than once); with another entry, or a builtin name, it is an error."""
    for entry in entries:
        entry = [str(x) for x in entry]
        if len(entry) not in (2, 3, 4):
            raise ValueError(
                f"DATASETS.REGISTER: each entry is [name, annotation_file, image_root], "
                f"[name, label_list, image_root, class_file], [name, voc_folder, split, "
                f"class_file], [name, data.yaml, split], [name, yolo_labels_folder, "
                f"image_root, class_file] or [name, image_folder] (no labels), got {entry}"
            )
        name, annotation_file, image_root = (entry + [""])[:3]
        class_file = entry[3] if len(entry) == 4 else ""
        if name in DatasetCatalog:
            declared = MetadataCatalog.get(name).get("declared")
            if declared != entry:
                raise ValueError(
                    f"DATASETS.REGISTER: dataset '{name}' is registered already, as "
                    f"{declared or 'a builtin dataset'}: choose another name"
                )
            continue
        if len(entry) == 2:
            if not os.path.isdir(annotation_file):
                raise FileNotFoundError(
                    f"DATASETS.REGISTER, dataset '{name}': no folder {annotation_file}: an entry "
                    "[name, image_folder] is a folder of photos without labels (an annotation "
                    "file is [name, annotation_file, image_root])"
                )
            register_image_folder(name, annotation_file)
            MetadataCatalog.get(name).set(declared=entry)
            continue
        is_folder = os.path.isdir(annotation_file)
        is_voc = is_folder and os.path.isdir(os.path.join(annotation_file, "Annotations"))
        extension = os.path.splitext(annotation_file)[1].lower()
        is_data_yaml = extension in YAML_EXTENSIONS
        if is_folder and not is_voc and not class_file:
            raise ValueError(
                f"DATASETS.REGISTER, dataset '{name}': {annotation_file} is a folder without "
                f"Annotations/: a VOC-style folder has Annotations/, ImageSets/Main/ and "
                f"JPEGImages/; a YOLO labels folder is [name, labels_folder, image_root, "
                f"class_file]"
            )
        for path in (annotation_file, class_file) if is_voc or is_data_yaml else entry[1:]:
            if path and not os.path.exists(path):
                raise FileNotFoundError(f"DATASETS.REGISTER, dataset '{name}': no {path}")
        if is_data_yaml or (is_folder and not is_voc):
            register_yolo(name, annotation_file, image_root, class_file)
        elif is_voc:
            split_file = os.path.join(annotation_file, "ImageSets", "Main", image_root + ".txt")
            if not os.path.isfile(split_file):
                raise FileNotFoundError(
                    f"DATASETS.REGISTER, dataset '{name}': a VOC-style folder's third item is "
                    f"its split, but there is no {split_file}"
                )
            classes = read_class_file(class_file) if class_file else VOC_CLASSES
            register_voc_multilabel(
                name, annotation_file, image_root, voc_year(annotation_file), classes
            )
        elif extension == ".json" and not class_file:
            register_coco_multilabel(name, annotation_file, image_root)
        elif extension in LIST_EXTENSIONS:
            register_label_list(name, annotation_file, image_root, class_file)
        else:
            raise ValueError(
                f"DATASETS.REGISTER, dataset '{name}': {annotation_file} is not {FORMATS}"
                + (" (a class file goes with a label list or a folder)" if class_file else "")
            )
        MetadataCatalog.get(name).set(declared=entry)
