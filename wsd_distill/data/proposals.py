"""Proposal files: the proposal store, detectron2's pickle, and the MATLAB ``.mat`` files
shipped with WSDDN/OICR releases.

- The proposal store (any path not ending in ``.pkl``) is a :class:`RaggedStore` with fields
  ``boxes`` [R, 4] XYXY_ABS and ``objectness_logits`` [R]. The dataset dicts carry only
  ``proposal_file`` and ``proposal_index``; the mapper reads an image's boxes when it needs them.
  Use it for COCO-sized datasets: detectron2's pickle is loaded whole into every process.
- detectron2's format is a pickle of ``{"ids": [image_id], "boxes": [float32 [N, 4] XYXY_ABS],
  "objectness_logits": [float32 [N]], "bbox_mode": BoxMode.XYXY_ABS}``.
Boxes are sorted by decreasing objectness (``detection_utils.transform_proposals`` keeps the
first top-k).
"""

import os
import pickle

import numpy as np
from detectron2.structures import BoxMode

from ..utils import atomic_write_bytes
from ..utils.digests import photo_sha1
from ..utils.ragged_store import RaggedStore, RaggedStoreWriter, is_ragged_store
from ..utils.safe_pickle import load_data_pickle
from .image_files import image_size

PICKLE_KEYS = ("ids", "boxes", "objectness_logits")


def image_records(dataset_dicts):
    """What a proposal store records of each image, to be recognised later: its file's last two
    path parts (``val2014/COCO_val2014_000000000042.jpg``, wherever the dataset root is), its
    size ``[height, width]`` (None where the dict has none) and the SHA-1 of its bytes (None
    where there is no file): photos rewritten since, or others under the same names, are told
    apart."""
    names = ["/".join(os.path.normpath(d["file_name"]).split(os.sep)[-2:]) for d in dataset_dicts]
    sizes = [[d["height"], d["width"]] if "height" in d else None for d in dataset_dicts]
    sha1s = [photo_sha1(d["file_name"]) for d in dataset_dicts]
    return {"image_names": names, "image_sizes": sizes, "image_sha1s": sha1s}


def save_proposals(path, ids, proposals, dtype="float32", meta=None):
    """Write proposals: a detectron2 pickle if ``path`` ends with ``.pkl``, else a proposal store.

    Args:
        ids (list): image ids, as in the dataset dicts.
        proposals (iterable): per image, ``(boxes, objectness_logits)``: [N_i, 4] XYXY_ABS boxes
            sorted by decreasing objectness and their [N_i] scores (higher is better).
        dtype: of the store's arrays ("float16" halves its size; coordinates up to 2048 stay
            within 1 px). The pickle is always float32.
        meta (dict): saved in the store's index (how the proposals were made).
    """
    proposals = iter(proposals)

    def check_count(n):
        if n != len(ids) or next(proposals, None) is not None:
            raise ValueError(
                f"{len(ids)} image ids but proposals for {'more' if n == len(ids) else n} images; "
                f"nothing written to {path}"
            )

    if path.endswith(".pkl"):
        pairs = [
            (np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32).reshape(-1))
            for _, (b, s) in zip(ids, proposals)
        ]
        check_count(len(pairs))
        data = {
            "ids": list(ids),
            "boxes": [b for b, _ in pairs],
            "objectness_logits": [s for _, s in pairs],
            "bbox_mode": BoxMode.XYXY_ABS,
        }
        atomic_write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        return
    fields = {"boxes": (dtype, (4,)), "objectness_logits": (dtype, ())}
    with RaggedStoreWriter(path, fields, meta={"content": "proposals", **(meta or {})}) as writer:
        for i, (b, s) in zip(ids, proposals):
            writer.append(i, boxes=b, objectness_logits=s)
        check_count(len(writer.keys))


def check_proposal_file(proposal_file):
    """Fail now, naming the file, if it is missing or not a proposal file (a store is opened and
    checked; a pickle must not be empty): the test files are checked before training."""
    if not os.path.exists(proposal_file):
        raise FileNotFoundError(
            f"Proposal file {proposal_file} does not exist: make it with "
            "tools/generate_proposals.py"
        )
    if os.path.isdir(proposal_file):
        open_proposal_store(proposal_file)
    elif os.path.getsize(proposal_file) == 0:
        raise ValueError(f"Proposal file {proposal_file} is empty (0 bytes): make it again")


def load_pickle_proposals(dataset_dicts, proposal_file):
    """detectron2's ``load_proposals_into_dataset`` on a pickle read as plain data (a proposal
    file from elsewhere runs no code): each record gets its image's ``proposal_boxes`` and
    ``proposal_objectness_logits``, best first, and ``proposal_bbox_mode``."""
    with open(proposal_file, "rb") as f:
        proposals = load_data_pickle(f, proposal_file)
    for old, new in (("indexes", "ids"), ("scores", "objectness_logits")):
        if old in proposals:
            proposals[new] = proposals.pop(old)
    wanted = {str(d["image_id"]) for d in dataset_dicts}
    index = {str(i): k for k, i in enumerate(proposals["ids"]) if str(i) in wanted}
    mode = BoxMode(proposals.get("bbox_mode", BoxMode.XYXY_ABS))
    for d in dataset_dicts:
        k = index[str(d["image_id"])]
        order = np.asarray(proposals["objectness_logits"][k]).argsort()[::-1]
        d["proposal_boxes"] = np.asarray(proposals["boxes"][k])[order]
        d["proposal_objectness_logits"] = np.asarray(proposals["objectness_logits"][k])[order]
        d["proposal_bbox_mode"] = mode
    return dataset_dicts


def load_proposals_into_dataset(dataset_dicts, proposal_file, check_images=True):
    """Give every dataset dict its proposals: ``proposal_file`` and ``proposal_index`` for a
    proposal store (read lazily by the mapper), the boxes themselves for a detectron2 pickle
    (detectron2's ``load_proposals_into_dataset``). The error for a missing image names it.

    With ``check_images``, proposals made for other images with the same ids are refused: a
    store records each image's bytes (SHA-1), file name and size (the same bytes are the same
    photo whatever its name), and a pickle's boxes must lie inside their image.
    """
    if os.path.isdir(proposal_file):  # (attach_proposal_store opens and checks it)
        return attach_proposal_store(dataset_dicts, proposal_file, check_images)
    check_proposal_file(proposal_file)
    try:
        dicts = load_pickle_proposals(dataset_dicts, proposal_file)
    except (EOFError, pickle.UnpicklingError, TypeError) as e:
        raise ValueError(
            f"Proposal file {proposal_file} is not a detectron2 proposal pickle "
            f"({e.__class__.__name__}: {e})"
        ) from None
    except KeyError as e:
        if e.args[0] in PICKLE_KEYS:
            raise ValueError(
                f"Proposal file {proposal_file} is not a detectron2 proposal pickle: it has no "
                f"{e.args[0]!r} (expected {', '.join(PICKLE_KEYS)})"
            ) from None
        raise KeyError(
            f"Proposal file {proposal_file} has no proposals for image id {e.args[0]!r} "
            f"({len(dataset_dicts)} images in the dataset): regenerate it for this dataset "
            f"with tools/generate_proposals.py (tools/distill.py makes it again once "
            f"it is deleted)"
        ) from None
    for d in dicts if check_images else ():
        boxes = BoxMode.convert(
            np.asarray(d["proposal_boxes"]), d["proposal_bbox_mode"], BoxMode.XYXY_ABS
        )
        if (
            "width" in d
            and len(boxes)
            and (boxes[:, 2].max() > d["width"] + 1 or boxes[:, 3].max() > d["height"] + 1)
        ):
            raise ValueError(
                f"Proposal file {proposal_file} has boxes up to ({boxes[:, 2].max():.0f}, "
                f"{boxes[:, 3].max():.0f}) for image id {d['image_id']!r}, which is "
                f"{d['width']}x{d['height']}: {_OTHER_IMAGES}"
            )
    return dicts


_RECORDS = {"image_names": "file", "image_sizes": "size", "image_sha1s": "photo bytes (SHA-1)"}
_OTHER_IMAGES = (
    "it was made for other images (another split or dataset with the same ids?). Make it for "
    "this dataset with tools/generate_proposals.py"
)


def attach_proposal_store(dataset_dicts, path, check_images=True):
    """Point each dataset dict at its row of the proposal store ``path`` (each must have one,
    and, with ``check_images``, match the store's record of its file name and size), once every
    image's proposals match their checksums."""
    store = open_proposal_store(path)
    store.verify()
    rows, missing = [], []
    for d in dataset_dicts:
        try:
            rows.append(store.row_of(d["image_id"]))
        except KeyError:
            missing.append(d["image_id"])
    if missing:
        raise KeyError(
            f"Proposal store {path} has no proposals for {len(missing)} of the "
            f"{len(dataset_dicts)} images (first: image id {missing[0]!r}); it holds "
            f"{len(store)} images, e.g. {store.keys[:3]}: it was made for another dataset. "
            f"Regenerate it with tools/generate_proposals.py"
        )
    recorded = {  # (a store made before a record was kept lacks it)
        k: store.meta[k] for k in ("image_sha1s", "image_names", "image_sizes") if store.meta.get(k)
    }
    for d, row in zip(dataset_dicts if check_images else (), rows):
        mine = image_records([d])
        for key, values in recorded.items():
            kept, now = values[row], mine[key][0]
            if key == "image_sha1s" and kept is not None and kept == now:
                break  # the same photo, whatever its name now
            if kept is not None and now is not None and kept != now:
                raise ValueError(
                    f"Proposal store {path} records image id {d['image_id']!r} with "
                    f"{_RECORDS[key]} {kept}, this dataset with {now}: {_OTHER_IMAGES}"
                )
    return [
        {**d, "proposal_file": path, "proposal_index": row} for d, row in zip(dataset_dicts, rows)
    ]


def open_proposal_store(path):
    """Open and check a proposal store (errors name the file and what is wrong)."""
    store = RaggedStore(path)
    if store.meta.get("content") != "proposals" or set(store.fields) != {
        "boxes",
        "objectness_logits",
    }:
        raise ValueError(
            f"{path} is a store of {store.meta.get('content')!r} with fields "
            f"{sorted(store.fields)}, not proposals"
        )
    return store


def fetch_proposals(dataset_dict, stores):
    """If ``dataset_dict`` points into a proposal store, read its boxes into it (in place) as
    detectron2's ``proposal_boxes``/``proposal_objectness_logits``/``proposal_bbox_mode``.

    ``stores`` (dict: path -> store) caches the stores this process has opened.
    """
    if "proposal_index" in dataset_dict:
        path, i = dataset_dict.pop("proposal_file"), dataset_dict.pop("proposal_index")
        if path not in stores:
            stores[path] = open_proposal_store(path)
        dataset_dict["proposal_boxes"] = stores[path].get(i, "boxes", np.float32)
        dataset_dict["proposal_objectness_logits"] = stores[path].get(
            i, "objectness_logits", np.float32
        )
        dataset_dict["proposal_bbox_mode"] = BoxMode.XYXY_ABS
    return dataset_dict


def check_proposal_boxes(dataset_dict, source):
    """An image's proposals (after ``fetch_proposals``) must be finite, boxes and scores (a
    score scales its RoI with SCALE_ROI_BY_PROPOSAL_SCORE), and lie in the image (2 pixels of
    slack): else proposals made for other images, or a broken file, would train silently on
    the whole-image box that replaces boxes clipped away."""
    boxes = np.asarray(dataset_dict["proposal_boxes"], dtype=np.float64).reshape(-1, 4)
    mode = dataset_dict.get("proposal_bbox_mode", BoxMode.XYXY_ABS)
    boxes = BoxMode.convert(boxes, mode, BoxMode.XYXY_ABS)
    h, w = dataset_dict["height"], dataset_dict["width"]
    where = f"{source}, image id {dataset_dict['image_id']!r} ({dataset_dict['file_name']})"
    scores = np.asarray(dataset_dict["proposal_objectness_logits"], dtype=np.float64)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError(
            f"Proposals of {where} are not all finite (NaN or inf boxes or scores): make them "
            f"again"
        )
    if len(boxes) and (boxes[:, :2].min() < -2 or (boxes[:, 2:] - [w, h]).max() > 2):
        raise ValueError(
            f"Proposals of {where} reach ({boxes[:, 0].min():.0f}, {boxes[:, 1].min():.0f}) to "
            f"({boxes[:, 2].max():.0f}, {boxes[:, 3].max():.0f}) in a {w}x{h} image: "
            + _OTHER_IMAGES
        )


def read_proposals(path):
    """``(ids, boxes, objectness_logits)`` of a proposal store or a detectron2 pickle, in file
    order."""
    if is_ragged_store(path):
        store = open_proposal_store(path)
        return (
            store.keys,
            [store.get(i, "boxes", np.float32) for i in range(len(store))],
            [store.get(i, "objectness_logits", np.float32) for i in range(len(store))],
        )
    with open(path, "rb") as f:
        data = load_data_pickle(f, path)
    if data.get("bbox_mode", BoxMode.XYXY_ABS) != BoxMode.XYXY_ABS:
        data["boxes"] = [
            BoxMode.convert(b, data["bbox_mode"], BoxMode.XYXY_ABS) for b in data["boxes"]
        ]
    return data["ids"], data["boxes"], data["objectness_logits"]


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
        raise KeyError(
            f"{mat_file} has no 'boxes' variable (found "
            f"{sorted(k for k in data if not k.startswith('__'))})"
        )
    names = None
    if "images" in data:
        names = [str(np.asarray(n).reshape(-1)[0]) for n in data["images"].reshape(-1)]
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in data["boxes"].reshape(-1)]
    scores = None
    if "boxScores" in data:
        scores = [
            np.asarray(s, dtype=np.float64).reshape(-1) for s in data["boxScores"].reshape(-1)
        ]
    return names, boxes, scores


def _out_of_bounds(boxes_per_image, sizes):
    """How many boxes, read as 1-based XYXY, lie beyond their image ([H, W] in ``sizes``)."""
    return sum(
        int(((b[:, 2] > w + 1) | (b[:, 3] > h + 1)).sum())
        for b, (h, w) in zip(boxes_per_image, sizes)
        if len(b)
    )


def load_mat_proposals(mat_file, dataset_dicts, box_order="auto", one_based=True):
    """Read a WSDDN/OICR ``.mat`` proposal file and match it to ``dataset_dicts``.

    The file holds cells ``images`` (names: an image id or a file name without extension),
    ``boxes`` ([N, 4] per image) and optionally ``boxScores`` ([N] per image, else the file's
    order is the ranking). Releases differ in box order: Fast R-CNN's selective search files
    use 1-based ``(y1, x1, y2, x2)``, EdgeBoxes files ``(x1, y1, x2, y2)``.

    Args:
        box_order: "xyxy", "yxyx", or "auto" (pick the order under which the boxes fit inside
            the images' ``height``/``width``, read from the files where the dicts have none;
            an error when both or neither fit).
        one_based: boxes are MATLAB 1-based inclusive pixel indices; ``x1, y1`` are shifted by
            -1 to get detectron2's continuous XYXY_ABS coordinates (as detectron2 reads VOC).
    Returns:
        (ids, boxes, objectness_logits) in dataset order, ready for :func:`save_proposals`.
    """
    names, boxes, scores = _read_mat(mat_file)
    if names is None:
        raise KeyError(
            f"{mat_file} has no 'images' variable: cannot tell which boxes belong to which image"
        )
    if len(names) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"{mat_file}: {len(names)} images but {len(boxes)} box arrays")
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for d in dataset_dicts:
        keys = (str(d["image_id"]), os.path.splitext(os.path.basename(d["file_name"]))[0])
        row = next((index[k] for k in keys if k in index), None)
        if row is None:
            raise KeyError(
                f"{mat_file} has no proposals for image id {d['image_id']!r} ({d['file_name']})"
            )
        rows.append(row)
    selected = [boxes[r] for r in rows]
    if box_order == "auto":
        sizes = [  # (a dataset without sizes, e.g. a label list: read from the files' headers)
            (d["height"], d["width"]) if "height" in d else image_size(d["file_name"])
            for d in dataset_dicts
        ]
        bad_xyxy = _out_of_bounds(selected, sizes)
        bad_yxyx = _out_of_bounds([b[:, [1, 0, 3, 2]] for b in selected], sizes)
        if (bad_xyxy == 0) == (bad_yxyx == 0):
            raise ValueError(
                f"{mat_file}: cannot tell the box order from the image sizes ({bad_xyxy} boxes "
                "out of bounds "
                f"as x1,y1,x2,y2; {bad_yxyx} as y1,x1,y2,x2): say which (--box-order xyxy or yxyx)"
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
