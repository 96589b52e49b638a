"""Reading image files as the loaders do (EXIF orientation applied), and their sizes."""

import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from PIL import Image, ImageOps

HIGH_BIT_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535}  # PIL modes


def read_image_file(file_name, image_format="BGR"):
    """detectron2's ``read_image`` [H, W, C] uint8, EXIF orientation applied, except that a
    16-bit image (a PNG or TIFF of PIL mode "I;16" or "I") is scaled to 8 bits (``>> 8``)
    rather than clipped to 255, which makes most of such an image white."""
    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        if image.mode == "F":  # floating point: no range a photo's pixels are known to be in
            raise ValueError(
                f"{file_name} is a floating-point image (PIL mode F): save it with 8 or 16 "
                "bits per channel"
            )
        if image.mode not in HIGH_BIT_MODES:
            return utils.read_image(file_name, format=image_format)
        image = ImageOps.exif_transpose(image)
        scale = 255.0 / HIGH_BIT_MODES[image.mode]
        grey = np.clip(np.asarray(image, dtype=np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return utils.convert_PIL_to_numpy(Image.fromarray(rgb, "RGB"), image_format)


def read_image(dataset_dict, image_format="BGR"):
    """``read_image_file`` (fully decoded, EXIF orientation applied), checked against
    the dict's ``height`` and ``width``; its errors (a missing file, a truncated JPEG, another
    size) name the image id and file, wherever in a data-loader worker they happen."""
    where = f"Image {dataset_dict['image_id']!r} ({dataset_dict['file_name']})"
    try:
        image = read_image_file(dataset_dict["file_name"], image_format)
    except Exception as e:  # noqa: BLE001 (any reader error: iopath, PIL, OSError)
        raise OSError(f"{where} cannot be read: {e.__class__.__name__}: {e}") from e
    expected = (dataset_dict.get("height"), dataset_dict.get("width"))
    if expected[0] is not None and image.shape[:2] != expected:
        raise OSError(
            f"{where} is {image.shape[0]}x{image.shape[1]} (height x width, after its EXIF "
            f"orientation) but the dataset says {expected[0]}x{expected[1]}: fix the file or "
            f"the annotations"
        )
    return image


def image_size(path):
    """(height, width) of an image as detectron2 reads it (EXIF orientation applied); a file
    that is no image PIL reads (cut, another format, a decompression bomb) is an OSError naming
    it."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
    except Exception as e:  # noqa: BLE001 (PIL's errors: OSError, DecompressionBombError, ...)
        raise OSError(f"{path} cannot be read as an image: {e.__class__.__name__}: {e}") from e
    return height, width
