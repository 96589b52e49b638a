"""A folder of photos without labels (``DATASETS.REGISTER`` entry ``[name, folder]``): images
a KD student distils on by L_p' and L_f alone (``DATASETS.UNLABELED``)."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .yolo import IMAGE_EXTENSIONS, images_under


def register_image_folder(name, folder) -> None:
    """Register the images under ``folder`` (recursively, sorted) as the dataset ``name``:
    detectron2 dicts (``file_name``, ``image_id`` = the path relative to ``folder``) without
    labels (``multi_labels`` empty)."""

    def load():
        images = images_under(folder)
        if not images:
            raise ValueError(
                f"Dataset '{name}': no image under {folder} (or it cannot be read); images end "
                f"with one of {', '.join(IMAGE_EXTENSIONS)}"
            )
        return [
            {"file_name": f, "image_id": os.path.relpath(f, folder), "multi_labels": []}
            for f in images
        ]

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(evaluator_type="multilabel", image_folder=folder)
