"""Triton Python model ``image_preprocess``: encoded image bytes → 8×8 digits pixels on 0–16.

Input ``IMAGE`` (BYTES, one encoded PNG/JPEG/GIF/BMP/... per item, any size and colour mode);
output ``PIXELS`` (FP32 ``[1, 8, 8]``) on the scikit-learn digits scale: integers 0–16, ink high
on a 0 background.

Conversion, in order:

1. Decode with Pillow. Animated images (GIF, APNG) use their **first frame**. Transparent images
   are composited over white. 16-bit images are scaled to 8 bits (value / 257); Pillow's own
   ``convert("L")`` would clip them instead.
2. Grayscale (ITU-R 601 luma) and box-filter resize to 8×8 (each output pixel the mean of its
   block, as the data set was made from 32×32 bitmaps).
3. Polarity: the data set has bright ink on a dark background. An image whose border (the 28
   outer pixels of the 8×8 result) has a median above mid-grey is an ordinary dark-on-light
   image and is inverted. No data-set image comes near that (their border medians are ≤ 0.5/16).
4. Scale 0–255 to 0–16 and round to integers, like the data set: a data-set image encoded as
   8-bit PNG (value × 255 / 16) comes back exactly.

Steps 1–2 run per image (decoding is unavoidable per image); steps 3–4 run as one numpy
operation over every image of every request in the ``execute`` call.

Bad input is refused for its request only, with ``INVALID_ARG`` and a message naming the
problem: empty bytes, bytes over ``max_image_bytes``, unidentifiable or truncated data, or an
image over ``max_image_pixels`` (checked from the header, before decoding: decompression-bomb
guard). Both limits are config parameters.
"""

import io
import json
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

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
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class ImageError(ValueError):
    """An input that cannot be turned into an image; the message says why."""


def decode(data, max_pixels=DEFAULT_MAX_PIXELS, max_bytes=DEFAULT_MAX_BYTES):
    """Encoded bytes → float32 ``[8, 8]`` grayscale on 0–255 (not yet inverted or rescaled)."""
    if len(data) == 0:
        raise ImageError("empty image: IMAGE holds 0 bytes")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size  # from the header; nothing is decoded yet
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (decompression-bomb guard)"
                )
            image.seek(0)
            image.draft("L", (SIZE * 8, SIZE * 8))  # JPEG: decode at a reduced scale
            gray = grayscale(image)
            small = Image.fromarray(gray).resize((SIZE, SIZE), Image.Resampling.BOX)
            return np.asarray(small, dtype=np.float32)
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


def preprocess(images, max_pixels=DEFAULT_MAX_PIXELS, max_bytes=DEFAULT_MAX_BYTES):
    """Encoded images → float32 ``[N, 1, 8, 8]``; raises ``ImageError`` for the first bad one."""
    gray = [decode(bytes(data), max_pixels, max_bytes) for data in images]
    return to_levels(np.stack(gray)) if gray else np.zeros((0, 1, SIZE, SIZE), np.float32)


def _parameter(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return int(value) if value else default


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.max_pixels = _parameter(config, "max_image_pixels", DEFAULT_MAX_PIXELS)
        self.max_bytes = _parameter(config, "max_image_bytes", DEFAULT_MAX_BYTES)
        # Pillow's own bomb check, as a second line behind the header check in decode().
        Image.MAX_IMAGE_PIXELS = self.max_pixels
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
                decoded.append(
                    (index, [decode(bytes(x), self.max_pixels, self.max_bytes) for x in items])
                )
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
