"""A small labelled photo set in the formats a user brings (a CSV label list, image-level COCO
jsons), cut from the real photographs scikit-learn and matplotlib ship: the README's "Your own
data" commands and tests/test_own_data.py run on it."""

import json
import os

import cv2
import numpy as np

CLASSES = ["china", "flower", "hopper"]  # scikit-learn's china.jpg, flower.jpg; grace_hopper.jpg


def sample_photos():
    """The three photographs, BGR, by class name."""
    import sklearn.datasets
    from matplotlib import cbook

    images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    return {
        "china": cv2.imread(os.path.join(images, "china.jpg")),
        "flower": cv2.imread(os.path.join(images, "flower.jpg")),
        "hopper": hopper,
    }


def write_sample_photo_set(root, sizes=(160, 40, 40), side=160, seed=0):
    """Write ``root/images/*.jpg``: collages of two random square crops (``side`` px each, side
    by side) of one or two of the photos, labelled by the photos they show, and their labels:
    ``train.csv`` (``image,labels`` with a header) for the first ``sizes[0]``, ``val.json`` and
    ``test.json`` (COCO, image-level labels, no boxes) for the next ``sizes[1]`` and
    ``sizes[2]``. Returns the number of images written."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    photos, rng = sample_photos(), np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    coco = {s: {"images": [], "annotations": [], "categories": categories} for s in ("val", "test")}
    rows = ["image,labels"]
    for i in range(sum(sizes)):
        names = [CLASSES[k] for k in rng.integers(len(CLASSES), size=2)]
        crops = []
        for name in names:
            h, w = photos[name].shape[:2]
            s = int(rng.integers(min(h, w) // 4, min(h, w) // 2))
            y, x = rng.integers(0, h - s), rng.integers(0, w - s)
            crops.append(cv2.resize(photos[name][y : y + s, x : x + s], (side, side)))
        file_name = f"{i:04d}.jpg"
        cv2.imwrite(os.path.join(root, "images", file_name), np.concatenate(crops, axis=1))
        labels = sorted(set(names), key=CLASSES.index)
        if i < sizes[0]:
            rows.append(f"{file_name},{';'.join(labels)}")
            continue
        split = coco["val" if i < sizes[0] + sizes[1] else "test"]
        split["images"].append({"id": i, "file_name": file_name, "height": side, "width": 2 * side})
        for name in labels:
            annotation = {"image_id": i, "category_id": 1 + CLASSES.index(name)}
            split["annotations"].append({"id": len(split["annotations"]) + 1, **annotation})
    with open(os.path.join(root, "train.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    for name, split in coco.items():
        with open(os.path.join(root, f"{name}.json"), "w") as f:
            json.dump(split, f)
    return sum(sizes)
