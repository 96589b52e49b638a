"""Proposal files: detectron2's pickle (written atomically, read with clear errors) and the
MATLAB ``.mat`` files shipped with WSDDN/OICR releases.

detectron2's format is a pickle of ``{"ids": [image_id], "boxes": [float32 [N, 4] XYXY_ABS],
"objectness_logits": [float32 [N]], "bbox_mode": BoxMode.XYXY_ABS}``, boxes sorted by
decreasing objectness (``detection_utils.transform_proposals`` keeps the first top-k).
"""
import os
import pickle

import numpy as np
from detectron2.data import load_proposals_into_dataset as _d2_load_proposals_into_dataset
from detectron2.structures import BoxMode


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_proposals(path, ids, boxes, objectness_logits):
    """Write a detectron2 proposal pickle.

    Args:
        ids (list): image ids, as in the dataset dicts.
        boxes (list[ndarray]): per image, [N_i, 4] XYXY_ABS boxes sorted by decreasing objectness.
        objectness_logits (list[ndarray]): per image, [N_i] scores (higher is better).
    """
    if not len(ids) == len(boxes) == len(objectness_logits):
        raise ValueError(f"{len(ids)} ids, {len(boxes)} box arrays, {len(objectness_logits)} logit arrays")
    data = {
        "ids": list(ids),
        "boxes": [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes],
        "objectness_logits": [np.asarray(s, dtype=np.float32).reshape(-1) for s in objectness_logits],
        "bbox_mode": BoxMode.XYXY_ABS,
    }
    atomic_write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))


def load_proposals_into_dataset(dataset_dicts, proposal_file):
    """detectron2's ``load_proposals_into_dataset``, with an error that names the missing image."""
    try:
        return _d2_load_proposals_into_dataset(dataset_dicts, proposal_file)
    except KeyError as e:
        raise KeyError(
            f"Proposal file {proposal_file} has no proposals for image id {e.args[0]!r} "
            f"({len(dataset_dicts)} images in the dataset): regenerate it for this dataset "
            f"with tools/generate_proposals.py"
        ) from None


def _read_mat(mat_file):
    """Return ``(names, boxes, scores or None)`` from a v5 (scipy) or v7.3 (HDF5) .mat file."""
    import h5py

    if h5py.is_hdf5(mat_file):
        with h5py.File(mat_file, "r") as f:

            def cell(key):
                return [f[ref] for ref in np.asarray(f[key]).reshape(-1)] if key in f else None

            names = cell("images")
            names = names and ["".join(map(chr, np.asarray(n).reshape(-1))) for n in names]
            boxes = [np.asarray(b, dtype=np.float64).T.reshape(-1, 4) for b in cell("boxes")]
            scores = cell("boxScores")
            scores = scores and [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
        return names, boxes, scores
    from scipy.io import loadmat

    data = loadmat(mat_file)
    if "boxes" not in data:
        raise KeyError(f"{mat_file} has no 'boxes' variable (found {sorted(k for k in data if not k.startswith('__'))})")
    names = None
    if "images" in data:
        names = [str(np.asarray(n).reshape(-1)[0]) for n in data["images"].reshape(-1)]
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in data["boxes"].reshape(-1)]
    scores = None
    if "boxScores" in data:
        scores = [np.asarray(s, dtype=np.float64).reshape(-1) for s in data["boxScores"].reshape(-1)]
    return names, boxes, scores


def _out_of_bounds(boxes_per_image, sizes):
    """How many boxes, read as 1-based XYXY, lie beyond their image ([H, W] in ``sizes``)."""
    return sum(
        int(((b[:, 2] > w + 1) | (b[:, 3] > h + 1)).sum()) for b, (h, w) in zip(boxes_per_image, sizes) if len(b)
    )


def load_mat_proposals(mat_file, dataset_dicts, box_order="auto", one_based=True):
    """Read a WSDDN/OICR ``.mat`` proposal file and match it to ``dataset_dicts``.

    The file holds cells ``images`` (names: an image id or a file name without extension),
    ``boxes`` ([N, 4] per image) and optionally ``boxScores`` ([N] per image, else the file's
    order is the ranking). Releases differ in box order: Fast R-CNN's selective search files
    use 1-based ``(y1, x1, y2, x2)``, EdgeBoxes files ``(x1, y1, x2, y2)``.

    Args:
        box_order: "xyxy", "yxyx", or "auto" (pick the order under which the boxes fit inside
            the images' ``height``/``width``; an error when both or neither fit).
        one_based: boxes are MATLAB 1-based inclusive pixel indices; ``x1, y1`` are shifted by
            -1 to get detectron2's continuous XYXY_ABS coordinates (as detectron2 reads VOC).
    Returns:
        (ids, boxes, objectness_logits) in dataset order, ready for :func:`save_proposals`.
    """
    names, boxes, scores = _read_mat(mat_file)
    if names is None:
        raise KeyError(f"{mat_file} has no 'images' variable: cannot tell which boxes belong to which image")
    if len(names) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"{mat_file}: {len(names)} images but {len(boxes)} box arrays")
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for d in dataset_dicts:
        keys = (str(d["image_id"]), os.path.splitext(os.path.basename(d["file_name"]))[0])
        row = next((index[k] for k in keys if k in index), None)
        if row is None:
            raise KeyError(f"{mat_file} has no proposals for image id {d['image_id']!r} ({d['file_name']})")
        rows.append(row)
    selected = [boxes[r] for r in rows]
    if box_order == "auto":
        sizes = [(d.get("height"), d.get("width")) for d in dataset_dicts]
        if any(h is None or w is None for h, w in sizes):
            raise ValueError(f"box_order='auto' needs image height/width in the dataset dicts; pass 'xyxy' or 'yxyx'")
        bad_xyxy = _out_of_bounds(selected, sizes)
        bad_yxyx = _out_of_bounds([b[:, [1, 0, 3, 2]] for b in selected], sizes)
        if (bad_xyxy == 0) == (bad_yxyx == 0):
            raise ValueError(
                f"{mat_file}: cannot tell the box order from the image sizes ({bad_xyxy} boxes out of bounds "
                f"as x1,y1,x2,y2; {bad_yxyx} as y1,x1,y2,x2): pass box_order='xyxy' or 'yxyx'"
            )
        box_order = "xyxy" if bad_xyxy == 0 else "yxyx"
    elif box_order not in ("xyxy", "yxyx"):
        raise ValueError(f"box_order must be 'auto', 'xyxy' or 'yxyx', got {box_order!r}")
    out_boxes, out_logits = [], []
    for row, b in zip(rows, selected):
        b = b[:, [1, 0, 3, 2]] if box_order == "yxyx" else b.copy()
        if one_based:
            b[:, :2] -= 1
        s = scores[row] if scores is not None else -np.arange(len(b), dtype=np.float64)
        order = np.argsort(-s, kind="stable")
        out_boxes.append(b[order].astype(np.float32))
        out_logits.append(s[order].astype(np.float32))
    return [d["image_id"] for d in dataset_dicts], out_boxes, out_logits
