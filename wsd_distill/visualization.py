"""The paper's picture: a teacher's top proposals and top predicted labels, drawn with
detectron2's ``Visualizer``."""
import numpy as np
from detectron2.utils.visualizer import Visualizer

CORRECT, WRONG, UNKNOWN = "lime", "red", "white"


def proposal_objectness(region_scores):
    """Objectness of each region from WSDDN region scores S [R, K]: ``max_k S_rk``, the
    region's largest contribution to any class score."""
    return region_scores.max(dim=1).values


def draw_teacher_view(image, boxes, objectness, image_scores, class_names, labels=None, num_proposals=10, num_labels=3):
    """Draw the ``num_proposals`` best boxes and the ``num_labels`` best labels of one image.

    Args:
        image (ndarray): RGB uint8 [H, W, 3], original size.
        boxes (ndarray): [R, 4] XYXY proposals in ``image`` pixels; objectness (ndarray): [R].
        image_scores (ndarray): [K] class scores; labels (ndarray or None): [K] ground truth
            (0/1): predicted labels are then green when right and red when wrong.
    Returns:
        RGB uint8 image with the drawing.
    """
    visualizer = Visualizer(image, scale=max(1.0, 320 / max(image.shape[:2])))
    order = np.argsort(-objectness)[:num_proposals]
    for rank, i in enumerate(order[::-1]):  # the best box is drawn last, on top
        shade = 0.4 + 0.6 * (len(order) - 1 - rank) / max(len(order) - 1, 1)
        visualizer.draw_box(boxes[i], edge_color=(1.0, 0.85 * shade, 0.0), alpha=shade, line_style="-")
    font = visualizer._default_font_size
    for row, k in enumerate(np.argsort(-image_scores)[:num_labels]):
        color = UNKNOWN if labels is None else (CORRECT if labels[k] > 0 else WRONG)
        mark = "" if labels is None else (" +" if labels[k] > 0 else " x")
        visualizer.draw_text(
            f"{class_names[k]} {image_scores[k]:.2f}{mark}", (4, 4 + row * 1.6 * font),
            color=color, horizontal_alignment="left", font_size=font,
        )  # fmt: skip
    return visualizer.output.get_image()
