"""Triton Python model ``image_preprocess``: encoded image bytes → 8×8 digits pixels on 0–16.

Input ``IMAGE`` (BYTES, one encoded PNG/JPEG/GIF/BMP/... per item, any size and colour mode);
output ``PIXELS`` (FP32 ``[1, 8, 8]``) on the scikit-learn digits scale: integers 0–16, ink high
on a 0 background.

Conversion, in order:

1. Decode with Pillow. Animated images (GIF, APNG) use their **first frame**. A JPEG is decoded
   at the smallest of its reduced scales (1/2 to 1/8) that still gives 64×64 pixels or more.
   The EXIF orientation is applied (a phone stores a portrait photo sideways with
   ``Orientation`` 6 or 8). An image larger than 64×64 is box-resized to 64×64 right away, so
   the conversions below run on a small image (the 8×8 means do not move). Transparent
   images are composited over white. 16-bit images are scaled to 8 bits (value / 257);
   Pillow's own ``convert("L")`` would clip them instead.
2. Grayscale (ITU-R 601 luma) and box-filter resize to 8×8 (each output pixel the mean of its
   block, as the data set was made from 32×32 bitmaps).
3. Polarity: the data set has bright ink on a dark background. An image whose border (the 28
   outer pixels of the 8×8 result) has a median above mid-grey is an ordinary dark-on-light
   image and is inverted. No data-set image comes near that (their border medians are ≤ 0.5/16).
4. Scale 0–255 to 0–16 and round to integers, like the data set: a data-set image encoded as
   8-bit PNG (value × 255 / 16) comes back exactly.

Steps 1–2 run per image (decoding is unavoidable per image); steps 3–4 run as one numpy
operation over every image of every request in the ``execute`` call.

The cost of one request is bounded before anything is decoded: every image of a request is
opened (header only) first, and the request is refused if one image would decode to more than
``max_image_pixels`` (config parameter, default 1,048,576 = 1024×1024; a JPEG counts at its
reduced scale, so a 12-megapixel photo is fine) or all its images to more than
``max_request_decoded_bytes`` (default 16 MiB, e.g. four 1-megapixel RGBA images). A 75 KB
blank 4096×4096 RGBA PNG, which once cost 0.57 s and 300 MB of one instance, is refused from
its header.

Bad input is refused for its request only, with ``INVALID_ARG`` and a message naming the
problem: empty bytes, bytes over ``max_image_bytes``, unidentifiable or truncated data, an image
over ``max_image_pixels`` (decompression-bomb guard) or a request over
``max_request_decoded_bytes``. All three limits are config parameters.
"""

import contextlib
import io
import json
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, e.g. by unit tests of the pure helpers below
    pb_utils = None
try:
    import drift_window  # copied beside this file: see src/tritonctl/drift_window.py
except ImportError:
    drift_window = None

SIZE = 8
LEVELS = 16
DEFAULT_MAX_PIXELS = 1024 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_REQUEST_DECODED_BYTES = 16 * 1024 * 1024
#: Modes whose pixels a box filter may average (palette indices, 1-bit and I;16 may not).
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")


class ImageError(ValueError):
    """An input that cannot be turned into an image; the message says why."""


@contextlib.contextmanager
def _decoding():
    """Pillow's many exceptions → one ``ImageError`` naming the problem."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            "cannot identify an image format in IMAGE (not PNG, JPEG, GIF, ...)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"decompression-bomb guard: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"cannot decode image (corrupt or truncated): {error}") from None


def open_image(data, max_pixels=DEFAULT_MAX_PIXELS, max_bytes=DEFAULT_MAX_BYTES):
    """Read the header only; refuse an image that would decode to more than ``max_pixels``."""
    if len(data) == 0:
        raise ImageError("empty image: IMAGE holds 0 bytes")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data):,} bytes, over the limit of {max_bytes:,}")
    with _decoding():
        image = Image.open(io.BytesIO(data))
        declared = image.size  # from the header; nothing is decoded yet
        image.draft("L", (SIZE * 8, SIZE * 8))  # JPEG: decode at a reduced scale
    width, height = image.size
    if width * height > max_pixels:
        reduced = "" if image.size == declared else f" ({width}x{height} at JPEG's reduced scale)"
        raise ImageError(
            f"image is {declared[0]}x{declared[1]} = {declared[0] * declared[1]:,} pixels"
            f"{reduced}, over the limit of {max_pixels:,} (decompression-bomb guard)"
        )
    return image


def pillow_limit(max_pixels):
    """Pillow's own bomb limit (``Image.MAX_IMAGE_PIXELS``) for ``max_pixels``: a second line
    behind ``open_image``'s check, on the declared size, which for a JPEG may be 64 times what
    its reduced scale decodes."""
    return 64 * max_pixels


def decoded_bytes(image):
    """What decoding ``image`` (opened, at its draft scale) allocates, in bytes."""
    width, height = image.size
    depth = 2 if image.mode.startswith("I;16") else 4 if image.mode in ("I", "F") else 1
    return width * height * len(image.getbands()) * depth


def finish(image):
    """Decode an opened image → float32 ``[8, 8]`` grayscale on 0–255 (not inverted or scaled)."""
    with _decoding():
        image.load()
        image = ImageOps.exif_transpose(image) or image
        image = shrink(image)
        gray = grayscale(image)
        small = Image.fromarray(gray).resize((SIZE, SIZE), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float32)


def decode(data, max_pixels=DEFAULT_MAX_PIXELS, max_bytes=DEFAULT_MAX_BYTES):
    """Encoded bytes → float32 ``[8, 8]`` grayscale on 0–255 (not yet inverted or rescaled)."""
    return finish(open_image(data, max_pixels, max_bytes))


def shrink(image):
    """Box-resize to at most 64×64 right after decoding, so that the grayscale and alpha
    conversions run on a small image. The 8×8 means do not move: each of the final 8×8 boxes
    is exactly 8×8 of these (area-weighted) pixels, and Pillow weights RGBA by alpha, so
    compositing over white afterwards gives the same greys."""
    width, height = image.size
    target = (min(width, SIZE * 8), min(height, SIZE * 8))
    if target == image.size:
        return image
    if image.mode not in REDUCIBLE:
        if image.mode.startswith("I;16"):
            image = image.convert("I")
        elif image.mode == "1":
            image = image.convert("L")
        else:
            has_alpha = image.mode in ("PA", "RGBa", "La") or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
    return image.resize(target, Image.Resampling.BOX)


def grayscale(image):
    """Any Pillow image → float32 ``[H, W]`` on 0–255."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 257.0
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 255)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


def to_levels(gray):
    """float ``[N, 8, 8]`` on 0–255 → float32 ``[N, 1, 8, 8]`` on 0–16, ink high (one numpy op)."""
    gray = np.asarray(gray, dtype=np.float32).reshape(-1, SIZE, SIZE)
    border = np.concatenate(
        [gray[:, 0, :], gray[:, -1, :], gray[:, 1:-1, 0], gray[:, 1:-1, -1]], axis=1
    )
    light_background = np.median(border, axis=1) > 127.5
    ink = np.where(light_background[:, None, None], 255.0 - gray, gray)
    return np.rint(ink * (LEVELS / 255.0)).astype(np.float32)[:, None]


def decode_request(
    images,
    max_pixels=DEFAULT_MAX_PIXELS,
    max_bytes=DEFAULT_MAX_BYTES,
    max_request_bytes=DEFAULT_MAX_REQUEST_DECODED_BYTES,
):
    """One request's encoded images → a float32 ``[8, 8]`` grayscale each (0–255); raises
    ``ImageError`` before decoding anything if an image or their total is over a limit."""
    opened = [open_image(bytes(data), max_pixels, max_bytes) for data in images]
    total = sum(decoded_bytes(image) for image in opened)
    if max_request_bytes is not None and total > max_request_bytes:
        raise ImageError(
            f"the request's {len(opened)} images decode to {total:,} bytes, over the limit "
            f"of {max_request_bytes:,} per request (max_request_decoded_bytes)"
        )
    return [finish(image) for image in opened]


def preprocess(images, max_pixels=DEFAULT_MAX_PIXELS, max_bytes=DEFAULT_MAX_BYTES):
    """Encoded images → float32 ``[N, 1, 8, 8]`` digits levels, as the server converts them
    (no per-request total: for files read offline); raises ``ImageError``."""
    gray = decode_request(images, max_pixels, max_bytes, max_request_bytes=None)
    return to_levels(np.stack(gray)) if gray else np.zeros((0, 1, SIZE, SIZE), np.float32)


def _parameter(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return int(value) if value else default


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.max_pixels = _parameter(config, "max_image_pixels", DEFAULT_MAX_PIXELS)
        self.max_bytes = _parameter(config, "max_image_bytes", DEFAULT_MAX_BYTES)
        self.max_request_bytes = _parameter(
            config, "max_request_decoded_bytes", DEFAULT_MAX_REQUEST_DECODED_BYTES
        )
        Image.MAX_IMAGE_PIXELS = pillow_limit(self.max_pixels)
        self.failures_family = pb_utils.MetricFamily(
            name="tritonctl_image_preprocess_failures_total",
            description="requests refused because an image could not be decoded",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.failures = self.failures_family.Metric(labels={"model": "image_preprocess"})
        self.drift = self.drift_monitor(config)

    def drift_monitor(self, config):
        """Input-intensity PSI gauge against the digits reference profile, if there is one."""
        here = os.path.dirname(os.path.abspath(__file__))
        candidates = [  # own version folder, else the post-processing model's (same repository)
            os.path.join(here, "reference_profile.json"),
            os.path.join(here, "..", "..", "classify_postprocess", "1", "reference_profile.json"),
        ]
        path = next((p for p in candidates if os.path.exists(p)), None)
        if drift_window is None or path is None:
            pb_utils.Logger.log_warn(
                "no drift monitoring: reference profile or drift_window.py missing"
            )
            return None
        edges, fractions = drift_window.histogram(drift_window.load_json(path)["input_intensity"])
        self.intensity_edges = edges
        params = config.get("parameters", {})
        return drift_window.Monitor(
            pb_utils,
            params.get("drift_model_label", {}).get("string_value") or "digit_classifier",
            "input_intensity",
            fractions,
            window=int(params.get("drift_window", {}).get("string_value") or 512),
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        decoded = []  # (request index, [8x8 grayscale per item])
        for index, request in enumerate(requests):
            items = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            try:
                grays = decode_request(
                    items, self.max_pixels, self.max_bytes, self.max_request_bytes
                )
                decoded.append((index, grays))
            except ImageError as error:
                self.failures.increment(1)
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[],
                    error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG),
                )
        if decoded:
            pixels = to_levels(np.stack([g for _, grays in decoded for g in grays]))
            if self.drift is not None:
                self.drift.observe(drift_window.pixel_counts(pixels, self.intensity_edges))
            offsets = np.cumsum([len(grays) for _, grays in decoded])[:-1]
            for (index, _), part in zip(decoded, np.split(pixels, offsets), strict=True):
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("PIXELS", part)]
                )
        return responses
