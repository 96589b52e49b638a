"""Ultralytics/YOLO-format datasets: a folder of images with a parallel folder of label files,
one ``.txt`` per image (the path's last ``images`` folder replaced by ``labels``), one object a
line: ``class x_center y_center width height`` normalized to [0, 1] (or a segmentation
polygon, ``class x1 y1 x2 y2 ...``, whose bounding box is taken). A missing or empty label file
is an image without objects (Ultralytics' background images): an image without labels.

Declared by a ``data.yaml`` (its ``names``, list or {id: name}; its ``path``, relative to the
yaml's folder; a split's images: a folder, a ``.txt`` list of image paths, or a list of those)
or by a labels folder, an images folder and a class file (one name per line, or a data.yaml).
The boxes are kept, for CorLoc and AP50.
"""

import glob
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from ...utils.plain_files import load_plain_yaml, named_text_errors
from ..image_files import image_size
from .label_list import read_class_file

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
YAML_EXTENSIONS = (".yaml", ".yml")
NORMALIZED_SLACK = 0.01  # normalized coordinates a little outside [0, 1] are clipped


def read_data_yaml(path):
    """An Ultralytics data.yaml (read as plain data) -> (its dict, its dataset folder)."""
    data = load_plain_yaml(PathManager.get_local_path(path))
    if not isinstance(data, dict) or "names" not in data:
        raise ValueError(f"{path}: not an Ultralytics data.yaml (no 'names')")
    folder = os.path.dirname(os.path.abspath(path))
    return data, os.path.normpath(os.path.join(folder, str(data.get("path") or ".")))


def yolo_class_names(path):
    """The class names of a data.yaml (``names``: a list, or {id: name} with ids 0..K-1) or of
    a class file."""
    if not path.lower().endswith(YAML_EXTENSIONS):
        return read_class_file(path)
    names = read_data_yaml(path)[0]["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{path}: 'names' must have the ids 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise ValueError(
            f"{path}: 'names' is {names!r}: expected a list of class names or {{id: name}} "
            f"(one class: names: [{names}])"
        )
    names = [str(n) for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: 'names' repeats {duplicates}: each class has one name")
    return names


def images_under(folder):
    """Image files under ``folder`` (recursively), sorted."""
    files = glob.glob(os.path.join(glob.escape(folder), "**", "*"), recursive=True)
    return sorted(f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(f))


def split_images(data_yaml, split):
    """The image files of ``split`` of a data.yaml, and their root (for image ids)."""
    data, root = read_data_yaml(data_yaml)
    if split not in data or not data[split]:
        splits = [k for k in ("train", "val", "test") if data.get(k)]
        raise KeyError(f"{data_yaml} has no split '{split}' (it has {splits})")
    images = []
    for source in data[split] if isinstance(data[split], list) else [data[split]]:
        source = os.path.join(root, str(source))
        if os.path.isdir(source):
            images += images_under(source)
        elif os.path.isfile(source):  # a list of image paths, as Ultralytics reads it
            with PathManager.open(source, encoding="utf-8-sig") as f, named_text_errors(source):
                images += [list_entry(line.strip(), source, root) for line in f if line.strip()]
        else:
            raise FileNotFoundError(f"{data_yaml}, split '{split}': no folder or list {source}")
    return images, root


def list_entry(path, list_file, root):
    """An image of a split's list file: "./x" is relative to the list's folder, a relative
    path to the dataset folder (Ultralytics: the working directory), an absolute one as is."""
    if path.startswith("./"):
        return os.path.join(os.path.dirname(list_file), path[2:])
    return os.path.join(root, path)


def label_file_of(image, labels_dir="", image_root=""):
    """The label file of ``image``: under ``labels_dir`` at its path relative to
    ``image_root``, or (no ``labels_dir``) Ultralytics' rule, its path's last ``images``
    folder replaced by ``labels``."""
    stem = os.path.splitext(image)[0]
    if labels_dir:
        return os.path.join(labels_dir, os.path.relpath(stem, image_root) + ".txt")
    parts = stem.split(os.sep)
    if "images" in parts:
        k = len(parts) - 1 - parts[::-1].index("images")
        parts[k] = "labels"
    return os.sep.join(parts) + ".txt"


def read_yolo_labels(label_file, num_classes, height, width):
    """Annotations (XYXY_ABS boxes, ``category_id``) of one label file, and its problems."""
    if not os.path.isfile(label_file):
        return [], []
    annotations, problems = [], []
    with PathManager.open(label_file, encoding="utf-8-sig") as f, named_text_errors(label_file):
        lines = [line.split() for line in f]
    for number, values in enumerate(lines, start=1):
        if not values:
            continue
        try:
            k, numbers = int(values[0]), [float(v) for v in values[1:]]
        except ValueError:
            problems.append(f"{label_file}, line {number}: not numbers ({' '.join(values)})")
            continue
        if not 0 <= k < num_classes or len(numbers) < 4 or len(numbers) % 2:
            problems.append(
                f"{label_file}, line {number}: expected 'class x y w h' (class 0..."
                f"{num_classes - 1}) or 'class x1 y1 x2 y2 ...', got {' '.join(values)}"
            )
            continue
        if not all(-NORMALIZED_SLACK <= v <= 1 + NORMALIZED_SLACK for v in numbers):
            problems.append(
                f"{label_file}, line {number}: coordinates outside [0, 1] (YOLO's are "
                f"normalized by the image's width and height, not pixels): {' '.join(values)}"
            )
            continue
        if len(numbers) == 4:
            x, y, w, h = numbers
            box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        else:
            xs, ys = numbers[0::2], numbers[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        box = [min(max(v, 0.0), 1.0) * s for v, s in zip(box, (width, height) * 2)]
        if box[2] <= box[0] or box[3] <= box[1]:
            problems.append(
                f"{label_file}, line {number}: a box of zero width or height: {' '.join(values)}"
            )
            continue
        annotations.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": k})
    return annotations, problems


def load_yolo(dataset_name, images, image_root, class_names, labels_dir="") -> list[dict]:
    """detectron2 dicts (``file_name``, ``image_id`` = the path relative to ``image_root``,
    ``height``, ``width``, ``annotations``, ``multi_labels``) of YOLO-labelled ``images``; every
    bad line of every label file is named in one error."""
    dicts, problems, unlabeled = [], [], 0
    for image in images:
        record = {"file_name": image, "image_id": os.path.relpath(image, image_root)}
        if os.path.isfile(image):
            record["height"], record["width"] = image_size(image)
            label_file = label_file_of(image, labels_dir, image_root)
            annotations, bad = read_yolo_labels(
                label_file, len(class_names), record["height"], record["width"]
            )
            problems += bad
            record["annotations"] = annotations
            record["multi_labels"] = sorted({a["category_id"] for a in annotations})
            unlabeled += not annotations
        else:  # named with the other missing files by data.build.dataset_problems
            record.update(annotations=[], multi_labels=[])
        dicts.append(record)
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(f"Dataset '{dataset_name}':\n" + "\n".join(problems[:10]) + more)
    logger.info(
        f"{dataset_name}: {len(dicts)} images, {unlabeled} without labels (a missing or empty "
        f"label file: a background image), {len(class_names)} classes"
    )
    return dicts


def register_yolo(name, source, split_or_images, class_file="") -> None:
    """Register a YOLO-format dataset: ``source`` a data.yaml and ``split_or_images`` its
    split, or ``source`` a labels folder, ``split_or_images`` the images folder and
    ``class_file`` the class names (a names file or a data.yaml)."""
    if source.lower().endswith(YAML_EXTENSIONS):
        classes = yolo_class_names(class_file or source)

        def load():
            images, root = split_images(source, split_or_images)
            return load_yolo(name, images, root, classes)

    else:
        classes = yolo_class_names(class_file)

        def load():
            images = images_under(split_or_images)
            return load_yolo(name, images, split_or_images, classes, labels_dir=source)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=classes, evaluator_type="multilabel", has_boxes=True
    )
