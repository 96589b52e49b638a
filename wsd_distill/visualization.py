"""The paper's picture: a teacher's top proposals and top predicted labels, drawn with
detectron2's ``Visualizer``."""

import os

import cv2
import numpy as np
import torch
from detectron2.utils.visualizer import Visualizer
from tqdm import tqdm

from .data.build import thing_classes_of
from .data.image_files import read_image_file
from .modeling.wsddn import rescale_boxes
from .utils import atomic_write, atomic_write_bytes

CORRECT, WRONG, UNKNOWN = "lime", "red", "white"
MAX_PICTURE_SIDE = 1600  # a larger photo is shrunk before drawing (a 12000 px one: 18 GB)


def draw_teacher_view(
    image,
    boxes,
    region_scores,
    image_scores,
    class_names,
    labels=None,
    num_proposals=10,
    num_labels=3,
):
    """Draw the ``num_proposals`` best boxes by objectness (``max_k S_rk``), each labelled with
    its class ``argmax_k S_rk`` and that score, and the ``num_labels`` best labels of one image.

    Args:
        image (ndarray): RGB uint8 [H, W, 3], original size.
        boxes (ndarray): [R, 4] XYXY proposals in ``image`` pixels; region_scores (ndarray):
            [R, K] their WSDDN region scores S (R may be 0: a student's view).
        image_scores (ndarray): [K] class scores; labels (ndarray or None): [K] ground truth
            (0/1): predicted labels are then green and marked "right" when they are among its
            labels, red and "wrong" when not.
    Returns:
        RGB uint8 image with the drawing: at least 320 and at most ``MAX_PICTURE_SIDE`` pixels
        on its long side (a larger image is shrunk, and its boxes with it, before drawing).
    """
    shrink = MAX_PICTURE_SIDE / max(image.shape[:2])
    if shrink < 1:
        image = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        boxes = boxes * shrink
    visualizer = Visualizer(image, scale=max(1.0, 320 / max(image.shape[:2])))
    font = visualizer._default_font_size
    objectness = region_scores.max(axis=1) if len(region_scores) else np.zeros(0)
    order = np.argsort(-objectness, kind="stable")[:num_proposals]
    for rank, i in enumerate(order[::-1]):  # the best box is drawn last, on top
        shade = 0.4 + 0.6 * (len(order) - 1 - rank) / max(len(order) - 1, 1)
        color = (1.0, 0.85 * shade, 0.0)
        visualizer.draw_box(boxes[i], edge_color=color, alpha=shade, line_style="-")
        k = int(region_scores[i].argmax())
        visualizer.draw_text(
            f"{class_names[k]} {region_scores[i, k]:.2f}",
            (boxes[i][0] + 2, boxes[i][1] + 1),
            color=color,
            horizontal_alignment="left",
            font_size=0.7 * font,
        )
    for row, k in enumerate(np.argsort(-image_scores)[:num_labels]):
        color = UNKNOWN if labels is None else (CORRECT if labels[k] > 0 else WRONG)
        mark = "" if labels is None else (" right" if labels[k] > 0 else " wrong")
        visualizer.draw_text(
            f"{class_names[k]} {image_scores[k]:.2f}{mark}",
            (4, 4 + row * 1.6 * font),
            color=color,
            horizontal_alignment="left",
            font_size=font,
        )
    return visualizer.output.get_image()


def picture_names(names, used=None):
    """The picture of each image name (a path relative to a folder the user named, or a file
    name): the name + ".jpg" (photo.png -> photo.png.jpg), numbered when an earlier one had the
    same (photo.png_2.jpg); a name that would leave the output folder (absolute, or with "..")
    keeps only its file name. ``used``: the pictures named so far (updated)."""
    used = set() if used is None else used
    pictures = []
    for name in names:
        name = os.path.normpath(name)
        if os.path.isabs(name) or name.split(os.sep)[0] == "..":
            name = os.path.basename(name)
        picture, k = f"{name}.jpg", 1
        while picture in used:  # the same name in two inputs
            k += 1
            picture = f"{name}_{k}.jpg"
        used.add(picture)
        pictures.append(picture)
    return pictures


def write_picture(path, rgb):
    """An RGB picture [H, W, 3] as a JPEG at ``path``, written atomically: a link already at
    ``path`` is replaced, never followed; a picture that cannot be encoded is an error."""
    try:
        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))
    except cv2.error:
        ok = False
    if not ok:
        raise OSError(f"Cannot encode the picture {path} ({rgb.shape}) as a JPEG")
    atomic_write_bytes(path, jpeg.tobytes())


def visualize_teacher(model, data_loader, dataset_name, output_dir, num_images=20):
    """Write pictures of a WSDDN's view of ``num_images`` images to ``output_dir``, each named
    by its image's file name (``picture_names``).

    ``data_loader`` yields mapper dicts (e.g. ``Trainer.build_test_loader(cfg, dataset_name)``).
    Returns the paths written.
    """
    class_names = thing_classes_of(dataset_name)
    os.makedirs(output_dir, exist_ok=True)
    written, used = [], set()
    model.eval()
    with torch.no_grad(), tqdm(total=num_images, desc="visualize") as bar:
        for batch in data_loader:
            out = model.teacher_outputs(batch)
            region_scores = out["region_scores"].split(out["num_regions"])
            for x, proposals, scores, image_scores in zip(
                batch, out["proposals"], region_scores, out["image_scores"]
            ):
                image = read_image_file(x["file_name"], "RGB")
                boxes = rescale_boxes(proposals, *image.shape[:2], "proposal_boxes")
                drawing = draw_teacher_view(
                    image,
                    boxes.proposal_boxes.tensor.cpu().numpy(),
                    scores.cpu().numpy(),
                    image_scores.cpu().numpy(),
                    class_names,
                    x["multi_labels"].numpy(),
                )
                (name,) = picture_names([os.path.basename(x["file_name"])], used)
                written.append(os.path.join(output_dir, name))
                write_picture(written[-1], drawing)
                bar.update(1)
                if len(written) >= num_images:
                    return written
    return written


def plot_ap_gain(class_names, frequency, ap_without, ap_with, path):
    """Bar chart (PNG) of the per-class AP gain ``ap_with - ap_without`` (in AP points), one
    horizontal bar a class (readable at 80 or 150 classes), the most frequent (``frequency``:
    training images per class) at the top."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    order = np.argsort(-np.asarray(frequency), kind="stable")
    gain = (np.asarray(ap_with) - np.asarray(ap_without))[order]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.22 * len(order)))
    colors = ["tab:green" if g >= 0 else "tab:red" for g in gain]
    ax.barh(range(len(order)), gain, color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(order)), [f"{class_names[k]} ({frequency[k]})" for k in order])
    ax.set_ylim(len(order) - 0.5, -0.5)  # the most frequent first, at the top
    ax.tick_params(axis="x", top=True, labeltop=True)  # (a tall chart: the scale on both ends)
    ax.set_xlabel("AP gain from KD (points)")
    ax.set_ylabel("class (training images)")
    ax.set_title(f"S-Cls w/ KD minus w/o KD: mean gain {np.nanmean(gain):+.1f} AP")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
