"""In-process tests of the digits pre/post-processing helpers (pure numpy/Pillow, no server).

``python_backends/*/model.py`` import ``triton_python_backend_utils`` only when Triton runs them,
so their helper functions load here directly. The crafted inputs below are reused by the served
tests in ``test_digits_serving.py``.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]


def load_backend(name: str) -> ModuleType:
    path = ROOT / "python_backends" / name / "model.py"
    spec = importlib.util.spec_from_file_location(f"digits_backend_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


preprocess = load_backend("image_preprocess")
postprocess = load_backend("classify_postprocess")


# --- crafted inputs ---------------------------------------------------------------------------


def to_uint8(levels: np.ndarray) -> np.ndarray:
    """0–16 digits levels → 8-bit grey (ink bright), the inverse of the preprocessing scale."""
    return np.rint(np.asarray(levels, dtype=np.float64) * 255 / 16).astype(np.uint8)


def png(levels: np.ndarray, note: str = "") -> bytes:
    """The digit as an 8-bit PNG; a ``note`` (a text chunk) makes the bytes unique, not the image."""
    info = PngInfo()
    if note:
        info.add_text("note", note)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(levels)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def black_on_white_jpeg(levels: np.ndarray, scale: int = 10) -> bytes:
    """An ordinary scan: dark ink on white paper, RGB, larger than 8×8."""
    image = Image.fromarray(255 - to_uint8(levels)).resize((8 * scale, 8 * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png16(levels: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG of the digit (value × 65535 / 16)."""
    array = np.rint(np.asarray(levels, dtype=np.float64) * 65535 / 16).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert data[24] == 16, "expected a 16-bit PNG (IHDR bit depth)"
    return data


def animated_gif(first: np.ndarray, second: np.ndarray) -> bytes:
    frames = [Image.fromarray(to_uint8(f)).convert("P") for f in (first, second)]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0
    )
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` grey pixels but holds just one compressed row.

    Enough for a decoder to trust the header: what a decompression bomb looks like, without
    the test allocating the image.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def random_bytes() -> bytes:
    return np.random.default_rng(1).bytes(2048)


#: EXIF orientation -> how the stored pixels are turned from the upright image: what a camera
#: writes when it stores a photo sideways (Pillow's exif_transpose undoes it).
STORED_TURN = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def sideways(levels: np.ndarray, orientation: int, fmt: str = "PNG", scale: int = 1) -> bytes:
    """The digit stored turned, with the EXIF ``Orientation`` tag that says how to show it."""
    upright = Image.fromarray(to_uint8(levels)).resize((8 * scale, 8 * scale), Image.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    upright.transpose(STORED_TURN[orientation]).save(
        buffer, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {})
    )
    return buffer.getvalue()


def blank_png(mode: str, width: int, height: int) -> bytes:
    """A blank image: a few KB on the wire, ``width × height`` pixels once decoded."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


#: bad input -> a phrase its error message must contain
BAD_INPUTS = {
    "empty": (b"", "empty image"),
    "random bytes": (random_bytes(), "cannot identify an image format"),
    "truncated png": (truncated_png(), "truncated"),
    "20000x20000 png": (png_header_only(20_000, 20_000), "decompression-bomb"),
    "5000x5000 png": (png_header_only(5_000, 5_000), "decompression-bomb"),
}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.images, data.target


# --- preprocessing ----------------------------------------------------------------------------


def test_every_data_set_image_round_trips_exactly_through_png(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = digits
    pixels = preprocess.preprocess([png(image) for image in images])
    assert pixels.shape == (len(images), 1, 8, 8)
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels[:, 0], images)


def test_black_on_white_rgb_jpeg_of_any_size_is_inverted_and_downscaled(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = digits
    sample = images[:40]
    pixels = preprocess.preprocess(
        [black_on_white_jpeg(image, scale=s) for s, image in zip(range(2, 42), sample, strict=True)]
    )
    # JPEG is lossy: levels may move by one step, never more, and never polarity.
    assert np.abs(pixels[:, 0] - sample).max() <= 1


def test_transparent_png_is_composited_over_white(digits: tuple[np.ndarray, np.ndarray]) -> None:
    image = digits[0][5]
    alpha = to_uint8(image)  # black ink whose opacity is the digit, on a transparent page
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = alpha
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    np.testing.assert_array_equal(preprocess.preprocess([buffer.getvalue()])[0, 0], image)


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(digits: tuple[np.ndarray, np.ndarray]) -> None:
    image = digits[0][7]
    np.testing.assert_array_equal(preprocess.preprocess([png16(image)])[0, 0], image)


def test_animated_gif_uses_its_first_frame(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    first, second = images[labels == 1][0], images[labels == 8][0]
    pixels = preprocess.preprocess([animated_gif(first, second)])[0, 0]
    np.testing.assert_array_equal(pixels, first)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_a_clear_image_error(name: str) -> None:
    data, phrase = BAD_INPUTS[name]
    with pytest.raises(preprocess.ImageError, match=phrase):
        preprocess.decode(data, max_pixels=4096 * 4096)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=512),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff"]),
)
def test_arbitrary_bytes_give_levels_or_a_clear_image_error(data: bytes, prefix: bytes) -> None:
    try:
        pixels = preprocess.preprocess([prefix + data])
    except preprocess.ImageError as error:
        assert str(error)
    else:
        assert pixels.shape == (1, 1, 8, 8) and pixels.min() >= 0 and pixels.max() <= 16


def test_bomb_is_refused_from_the_header_before_decoding() -> None:
    # Over the limit by the header alone: the single compressed row shows nothing was decoded.
    with pytest.raises(preprocess.ImageError, match=r"1000x1000 = 1,000,000 pixels"):
        preprocess.decode(png_header_only(1000, 1000), max_pixels=999_999)


@pytest.mark.parametrize("orientation", sorted(STORED_TURN))
def test_exif_orientation_is_applied(
    digits: tuple[np.ndarray, np.ndarray], orientation: int
) -> None:
    image = digits[0][11]
    stored = sideways(image, orientation)
    np.testing.assert_array_equal(preprocess.preprocess([stored])[0, 0], image)
    # The tag is what makes the difference: without it the grid is the turned one.
    turned = np.asarray(Image.open(io.BytesIO(stored)))
    assert not np.array_equal(turned, to_uint8(image))
    # A sideways JPEG photo (decoded at a reduced scale, then turned): JPEG moves a level by 1.
    photo = sideways(image, orientation, fmt="JPEG", scale=40)
    assert np.abs(preprocess.preprocess([photo])[0, 0] - image).max() <= 1


def test_a_blank_4096_rgba_png_is_refused_from_its_header() -> None:
    data = blank_png("RGBA", 4096, 4096)
    assert len(data) < 100_000  # cheap to send: 64 MiB once decoded
    with pytest.raises(
        preprocess.ImageError, match=r"4096x4096 = 16,777,216 pixels, over the limit of 1,048,576"
    ):
        preprocess.decode(data)


def test_a_12_megapixel_jpeg_is_decoded_at_a_reduced_scale(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Over the 1-megapixel limit as declared, not as decoded: JPEG decodes at 1/8 scale."""
    image = digits[0][3]
    big = Image.fromarray(255 - to_uint8(image)).resize((4000, 4000), Image.NEAREST)
    buffer = io.BytesIO()
    big.convert("RGB").save(buffer, format="JPEG", quality=90)
    opened = preprocess.open_image(buffer.getvalue())
    assert opened.size == (500, 500)
    assert np.abs(preprocess.preprocess([buffer.getvalue()])[0, 0] - image).max() <= 1


def test_a_request_over_its_decoded_byte_budget_is_refused_before_decoding() -> None:
    """Each image is under the pixel limit; together they are not: refused from the headers."""
    images = [blank_png("RGBA", 1024, 1024)] * 5  # 4 MiB each once decoded
    with pytest.raises(
        preprocess.ImageError,
        match=r"5 images decode to 20,971,520 bytes, over the limit of 16,777,216 per request",
    ):
        preprocess.decode_request(images)
    assert len(preprocess.decode_request(images[:4])) == 4


def test_large_images_are_reduced_before_conversion_without_moving_the_levels(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Reducing by an integer factor right after decoding (alpha-weighted for RGBA) gives the
    levels the full-size conversion gave: ink on a transparent page, scaled up 100 times."""
    image = digits[0][9]
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = to_uint8(image)
    big = Image.fromarray(rgba, mode="RGBA").resize((800, 800), Image.NEAREST)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    np.testing.assert_array_equal(preprocess.preprocess([buffer.getvalue()])[0, 0], image)


def test_tiny_and_odd_sized_images_still_give_8x8_levels() -> None:
    rng = np.random.default_rng(2)
    blobs = []
    for width, height in [(1, 1), (3, 17), (200, 9)]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(buffer, "PNG")
        blobs.append(buffer.getvalue())
    pixels = preprocess.preprocess(blobs)
    assert pixels.shape == (3, 1, 8, 8)
    assert pixels.min() >= 0 and pixels.max() <= 16
    np.testing.assert_array_equal(pixels, np.rint(pixels))


# --- postprocessing ---------------------------------------------------------------------------


def test_top_k_is_sorted_softmax_with_string_labels() -> None:
    logits = np.array(
        [[0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [9.0, 0, 0, 0, 0, 0, 0, 0, 0, 8]], np.float32
    )
    labels, scores = postprocess.top_k(logits, 3)
    assert labels.tolist() == [[b"9", b"8", b"7"], [b"0", b"9", b"1"]]
    expected = np.exp(logits[0] - 9) / np.exp(logits[0] - 9).sum()
    np.testing.assert_allclose(scores[0], expected[[9, 8, 7]], rtol=1e-6)
    assert scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
