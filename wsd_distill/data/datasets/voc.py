"""PASCAL VOC (2007) as a multi-label dataset, with boxes and "difficult" flags for WSOD metrics."""

import os
import xml.etree.ElementTree as ET

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager


def unknown_class_hint(class_names):
    """What an unknown class's error adds: that VOC's 20 are the default, or the class count."""
    if list(class_names) == list(VOC_CLASSES):
        return (
            ": not one of VOC's 20 classes, the default; name your class file as the fourth "
            "item of the folder's DATASETS.REGISTER entry"
        )
    return f": not one of the class file's {len(class_names)}"


def load_voc_multilabel(dirname, split, class_names=VOC_CLASSES) -> list[dict]:
    """Load ``dirname/ImageSets/Main/<split>.txt`` with its ``Annotations/*.xml``.

    Boxes follow detectron2's ``load_voc_instances`` (1-based inclusive pixel indices become
    XYXY_ABS coordinates); each annotation also keeps ``difficult``. ``multi_labels`` holds
    every class with an object in the image, difficult ones included (training uses them, as
    detectron2 and the multi-label literature do); ``ignored_labels`` the classes whose only
    objects are difficult, which evaluation leaves out of AP (the VOC devkit's and ML-GCN's
    ``difficult_examples``; see ``compute_multilabel_metrics``).
    """
    with PathManager.open(os.path.join(dirname, "ImageSets", "Main", split + ".txt")) as f:
        file_ids = [line.split()[0] for line in f if line.strip()]
    dicts = []
    for file_id in file_ids:
        anno_file = os.path.join(dirname, "Annotations", file_id + ".xml")
        with PathManager.open(anno_file) as f:
            tree = ET.parse(f)
        annotations = []
        for obj in tree.findall("object"):
            name = obj.find("name").text.strip()
            if name not in class_names:
                raise ValueError(
                    f"{anno_file}: unknown class '{name}'" + unknown_class_hint(class_names)
                )
            box = [float(obj.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            box[0] -= 1.0
            box[1] -= 1.0
            difficult = obj.find("difficult")
            annotations.append(
                {
                    "category_id": class_names.index(name),
                    "bbox": box,
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "difficult": int(difficult.text) if difficult is not None else 0,
                }
            )
        dicts.append(
            {
                "file_name": os.path.join(dirname, "JPEGImages", file_id + ".jpg"),
                "image_id": file_id,
                "height": int(tree.find("./size/height").text),
                "width": int(tree.find("./size/width").text),
                "annotations": annotations,
                "multi_labels": sorted({a["category_id"] for a in annotations}),
                "ignored_labels": sorted(
                    {a["category_id"] for a in annotations}
                    - {a["category_id"] for a in annotations if not a["difficult"]}
                ),
            }
        )
    return dicts


def register_voc_multilabel(name, dirname, split, year, class_names=VOC_CLASSES) -> None:
    DatasetCatalog.register(name, lambda: load_voc_multilabel(dirname, split, class_names))
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        dirname=dirname,
        year=year,
        split=split,
        evaluator_type="multilabel",
        has_boxes=True,
    )
