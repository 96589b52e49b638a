"""Synthetic shapes: the embedded multi-label benchmark, written as JPEGs plus COCO jsons.

Twelve classes, each a shape filled with its own sinusoidal grating (``PATTERN_ORIENTATIONS``
x ``PATTERN_PERIODS``, periods in pixels of the generated image); colour, size, rotation,
aspect and position are random. Objects are often small (diameter 10%-45% of the image side by
default, log-uniform, so most boxes cover under 10% of it), 1-4 per image, on cluttered
backgrounds (gradients, noise, lines, arcs, scribbles and irregular blobs of noise texture).
Class frequencies follow a fixed long tail (``CLASS_PRIOR``) and the pairs in
``CO_OCCURRING`` tend to appear together. The finest gratings vanish at half resolution, as
small objects do in COCO at 224 px: a low-resolution global classifier is at a disadvantage
against a region-based model at full resolution, which is what distillation exploits. (Shapes
in flat colours alone were not learnable from scratch in CPU minutes; the gratings are.)

Generation is deterministic: image ``i`` of split ``s`` is drawn from its own random stream
seeded by ``(seed, s, i)``, so the same parameters give the same bytes.
"""

import json
import logging
import os
import shutil

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from .coco_multilabel import load_coco_multilabel_json

logger = logging.getLogger(__name__)

SHAPE_CLASSES = (
    "circle",
    "triangle",
    "square",
    "pentagon",
    "hexagon",
    "star",
    "cross",
    "ring",
    "crescent",
    "heart",
    "arrow",
    "ell",
)
CLASS_PRIOR = np.arange(1, len(SHAPE_CLASSES) + 1) ** -0.7
CLASS_PRIOR = CLASS_PRIOR / CLASS_PRIOR.sum()
CO_OCCURRING = (
    ("circle", "ring"),
    ("triangle", "arrow"),
    ("star", "crescent"),
    ("square", "cross"),
    ("pentagon", "heart"),
    ("hexagon", "ell"),
)
_PARTNER = {
    SHAPE_CLASSES.index(a): SHAPE_CLASSES.index(b) for p in CO_OCCURRING for a, b in (p, p[::-1])
}
PATTERN_PERIODS = (3.0, 4.5, 7.0)
PATTERN_ORIENTATIONS = (0, 45, 90, 135)
SPLITS = ("train", "val", "test")
DEMO_SIZES = {"train": 3000, "val": 500, "test": 1000}  # the benchmark of docs/results.md
DEMO_IMAGE_SIZE = 128  # side of its square images, in pixels
_PARAMS_FILE = "generator.json"
GENERATOR_VERSION = 2  # bumped whenever the drawing changes, so an old folder is never reused


def _regular(n, radius=1.0, phase=-np.pi / 2):
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def shape_outline(name):
    """The shape as a list of ``(polygon [P, 2] in [-1, 1], fill)``; fill 0 cuts a hole."""
    circle = _regular(64)
    if name == "circle":
        return [(circle, 1)]
    if name == "ring":
        return [(circle, 1), (0.55 * circle, 0)]
    if name == "crescent":
        return [(circle, 1), (0.85 * circle + [0.45, -0.15], 0)]
    if name in ("triangle", "square", "pentagon", "hexagon"):
        sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[name]
        return [(_regular(sides, phase=-np.pi / 2 + (np.pi / 4 if sides == 4 else 0)), 1)]
    if name == "star":
        star = _regular(10)
        star[1::2] *= 0.42
        return [(star, 1)]
    if name == "cross":
        a, b = 0.33, 1.0
        pts = [
            (-a, -b),
            (a, -b),
            (a, -a),
            (b, -a),
            (b, a),
            (a, a),
            (a, b),
            (-a, b),
            (-a, a),
            (-b, a),
            (-b, -a),
            (-a, -a),
        ]
        return [(np.array(pts, dtype=float), 1)]
    if name == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [(np.stack([x, y + 2.5], axis=1) / 16.5, 1)]
    if name == "arrow":
        pts = [
            (-1, -0.28),
            (0.15, -0.28),
            (0.15, -0.7),
            (1, 0),
            (0.15, 0.7),
            (0.15, 0.28),
            (-1, 0.28),
        ]
        return [(np.array(pts, dtype=float), 1)]
    if name == "ell":
        pts = [(-0.75, -1), (-0.15, -1), (-0.15, 0.4), (0.75, 0.4), (0.75, 1), (-0.75, 1)]
        return [(np.array(pts, dtype=float), 1)]
    raise KeyError(f"unknown shape '{name}'")


def _fill(mask, polygon, value):
    pts = np.round(polygon * 16).astype(np.int32)  # 4 fractional bits for anti-aliasing
    cv2.fillPoly(mask, [pts], int(value), lineType=cv2.LINE_AA, shift=4)


def _color(rng):
    return rng.integers(0, 256, size=3).astype(np.float32)


def _background(rng, size):
    """Gradient between two colours, low-frequency blotches and pixel noise: [S, S, 3] float."""
    c0, c1 = _color(rng), _color(rng)
    direction = rng.normal(size=2)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (xx * direction[0] + yy * direction[1]) / (np.abs(direction).sum() + 1e-6)
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    blotches = cv2.resize(
        rng.normal(0, 30, (6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    return img + blotches + rng.normal(0, 6, (size, size, 3))


def _draw_distractor(img, rng, size):
    """A line, arc or scribble in a random colour, or an irregular blob filled with blocky noise
    (objects are solid-coloured, so a blob never looks like one of the shapes)."""
    color = tuple(float(c) for c in _color(rng))
    kind = rng.integers(4)
    thickness = int(rng.integers(1, 4))
    if kind == 0:
        p, q = rng.integers(0, size, (2, 2))
        cv2.line(
            img, tuple(int(v) for v in p), tuple(int(v) for v in q), color, thickness, cv2.LINE_AA
        )
    elif kind == 1:
        center = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 20, size // 4, 2))
        start = float(rng.uniform(0, 360))
        cv2.ellipse(
            img, center, axes, 0, start, start + rng.uniform(40, 240), color, thickness, cv2.LINE_AA
        )
    elif kind == 2:
        steps = rng.normal(0, size / 12, (int(rng.integers(4, 10)), 2)).cumsum(axis=0)
        pts = (steps + rng.uniform(0, size, 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, color, thickness, cv2.LINE_AA)
    else:
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radius = np.ones_like(theta)
        for harmonic in range(2, 6):
            radius += rng.uniform(0.1, 0.3) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
        r0 = rng.uniform(0.02, 0.08) * size
        pts = rng.uniform(0, size, 2) + r0 * radius[:, None] * np.stack(
            [np.cos(theta), np.sin(theta)], 1
        )
        mask = np.zeros((size, size), np.uint8)
        _fill(mask, pts, 255)
        cells = max(2, size // int(rng.integers(4, 12)))
        texture = cv2.resize(
            rng.uniform(0, 255, (cells, cells, 3)), (size, size), interpolation=cv2.INTER_NEAREST
        )
        alpha = mask[..., None] / 255.0
        img[:] = img * (1 - alpha) + texture * alpha


def _grating(cls, color, size, rng):
    """The class's fill: a sinusoidal grating [S, S, 3] from half ``color`` up by 127 in every
    channel, with the class's orientation and period (in pixels of the generated image) and a
    random phase."""
    period = PATTERN_PERIODS[cls % len(PATTERN_PERIODS)]
    theta = np.deg2rad(PATTERN_ORIENTATIONS[cls // len(PATTERN_PERIODS)])
    yy, xx = np.mgrid[0:size, 0:size]
    wave = 0.5 + 0.5 * np.cos(
        2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi)
    )
    return 0.5 * color + 127 * wave[..., None]


def _sample_classes(rng):
    num_objects = rng.choice([1, 2, 3, 4], p=[0.25, 0.3, 0.25, 0.2])
    classes = [int(rng.choice(len(SHAPE_CLASSES), p=CLASS_PRIOR))]
    while len(classes) < num_objects:
        anchor = classes[int(rng.integers(len(classes)))]
        if anchor in _PARTNER and rng.random() < 0.5:
            classes.append(_PARTNER[anchor])
        else:
            classes.append(int(rng.choice(len(SHAPE_CLASSES), p=CLASS_PRIOR)))
    return classes


def _overlap(a, b):
    """Intersection over the smaller box's area: a small box hidden by a big one counts fully."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def render_image(rng, size, object_size=(0.1, 0.45), distractors=(2, 8)):
    """Draw one image. Returns (BGR uint8 [S, S, 3], [(class index, XYXY box)]).

    Args:
        object_size: range of object diameters as a fraction of ``size`` (log-uniform).
        distractors: range of the number of distractors drawn behind the objects.
    """
    img = _background(rng, size)
    for _ in range(int(rng.integers(distractors[0], distractors[1] + 1))):
        _draw_distractor(img, rng, size)
    objects, placed = [], []
    for cls in _sample_classes(rng):
        radius = np.exp(rng.uniform(np.log(object_size[0]), np.log(object_size[1]))) * size / 2
        for _ in range(30):
            center = rng.uniform(radius, size - radius, 2)
            approx = (*(center - radius), *(center + radius))
            if all(_overlap(approx, other) < 0.2 for other in placed):
                break
        else:
            continue  # no room left for this object
        angle = rng.uniform(0, 2 * np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        stretch = rng.uniform(0.8, 1.2, 2)
        mask = np.zeros((size, size), np.uint8)
        for polygon, fill in shape_outline(SHAPE_CLASSES[cls]):
            _fill(mask, center + (polygon * stretch) @ rotation.T * radius, 255 * fill)
        ys, xs = np.nonzero(mask > 127)
        if len(xs) == 0:
            continue
        color = _color(rng)
        for _ in range(20):  # keep the object visible against what lies under it
            if np.linalg.norm(color - img[ys, xs].mean(axis=0)) > 80:
                break
            color = _color(rng)
        alpha = mask[..., None] / 255.0
        img = img * (1 - alpha) + _grating(cls, color, size, rng) * alpha
        placed.append(approx)
        objects.append(
            (cls, [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        )
    for _ in range(int(rng.integers(0, 3))):  # thin clutter in front of the objects
        p, q = rng.integers(0, size, (2, 2))
        cv2.line(
            img,
            tuple(int(v) for v in p),
            tuple(int(v) for v in q),
            tuple(float(c) for c in _color(rng)),
            1,
            cv2.LINE_AA,
        )
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _write_split(root, split, num_images, size, seed, **render_args):
    os.makedirs(os.path.join(root, split))
    images, annotations = [], []
    for i in tqdm(range(num_images), desc=f"synthetic_shapes_{split}", leave=False):
        rng = np.random.default_rng([seed, SPLITS.index(split), i])
        img, objects = render_image(rng, size, **render_args)
        file_name = f"{split}/{i + 1:06d}.jpg"
        cv2.imwrite(os.path.join(root, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": file_name, "height": size, "width": size})
        for cls, (x0, y0, x1, y1) in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": k + 1, "name": name, "supercategory": "shape"}
        for k, name in enumerate(SHAPE_CLASSES)
    ]
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def generate_synthetic_shapes(
    root, num_images, image_size=256, seed=0, object_size=(0.1, 0.45), distractors=(2, 8)
):
    """Write the benchmark to ``root`` unless it is already there with the same parameters.

    Args:
        num_images (dict): images per split, e.g. ``{"train": 2000, "val": 400, "test": 1000}``.
        object_size, distractors: see :func:`render_image`.
    The folder appears atomically (written beside it, then renamed); a folder made with other
    parameters is an error, never overwritten.
    """
    params = {
        "version": GENERATOR_VERSION,
        "num_images": dict(num_images),
        "image_size": int(image_size),
        "seed": int(seed),
        "object_size": [float(v) for v in object_size],
        "distractors": [int(v) for v in distractors],
    }
    params_file = os.path.join(root, _PARAMS_FILE)
    if os.path.exists(params_file):
        with open(params_file) as f:
            existing = json.load(f)
        if existing != params:
            raise RuntimeError(
                f"{root} holds synthetic shapes generated with {existing}, but {params} was asked "
                "for: delete the folder or point DETECTRON2_DATASETS elsewhere"
            )
        return root
    if os.path.exists(root):
        raise RuntimeError(
            f"{root} exists but has no {_PARAMS_FILE}: not a synthetic shapes folder"
        )
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "annotations"))
    for split, n in num_images.items():
        _write_split(
            tmp, split, n, image_size, seed, object_size=object_size, distractors=distractors
        )
    with open(os.path.join(tmp, _PARAMS_FILE), "w") as f:
        json.dump(params, f)
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished first; its folder is checked like any other
        shutil.rmtree(tmp, ignore_errors=True)
        return generate_synthetic_shapes(
            root, num_images, image_size, seed, object_size, distractors
        )
    logger.info(f"Wrote synthetic shapes {params} to {root}")
    return root


def prepare_synthetic_shapes(cfg):
    """Generate the synthetic shapes (``DEMO_SIZES`` images of ``DEMO_IMAGE_SIZE`` px, seed 0,
    the default object sizes and distractors) if the config uses them and their folder does not
    exist; a folder already made (datasets/prepare_synthetic_shapes.py, with other sizes, seed
    or difficulty) is used as it is.

    Run it on the main process only (``tools/train_net.py`` does); returns the folder or None.
    """
    names = [
        n for n in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST) if n.startswith("synthetic_shapes_")
    ]
    if not names:
        return None
    root = MetadataCatalog.get(names[0]).dataset_root
    if not os.path.exists(os.path.join(root, _PARAMS_FILE)):
        generate_synthetic_shapes(root, DEMO_SIZES, DEMO_IMAGE_SIZE)
    return root


def _load(root, split, name):
    json_file = os.path.join(root, "annotations", f"instances_{split}.json")
    if not os.path.exists(json_file):
        raise FileNotFoundError(
            f"{json_file} not found: generate the synthetic shapes first "
            "(tools/train_net.py and tools/distill.py --synthetic do it, or "
            "datasets/prepare_synthetic_shapes.py)"
        )
    return load_coco_multilabel_json(json_file, root, name)


def register_synthetic_shapes(root, prefix="synthetic_shapes") -> None:
    for split in SPLITS:
        name = f"{prefix}_{split}"
        DatasetCatalog.register(name, lambda split=split, name=name: _load(root, split, name))
        MetadataCatalog.get(name).set(
            thing_classes=list(SHAPE_CLASSES),
            image_root=root,
            dataset_root=root,
            json_file=os.path.join(root, "annotations", f"instances_{split}.json"),
            evaluator_type="multilabel",
            has_boxes=True,
        )
