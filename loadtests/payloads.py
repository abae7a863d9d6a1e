"""Request payloads for load tests: texts with a realistic length mix, and encoded digit images.

Both pools are fixed (seeded) so two runs send the same requests, and built once per process
before the first request, so building them never counts in a measured latency.

With ``unique=True`` (``TRITON_UNIQUE_PAYLOADS=1``, the default) every request differs from all
others while looking the same to the model: texts get a short ``#n`` suffix, images one pixel
changed by one grey level. Otherwise a few thousand requests into a run Triton's response
cache answers nearly all of them, and the test measures the cache instead of the model. Set it
to 0 to measure a workload that really does repeat itself.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import random
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Used only if ``tritonctl.corpus`` is not importable (a Locust image without tritonctl).
FALLBACK_SENTENCES = (
    "How do I reset my password?",
    "The quarterly report shows revenue grew by twelve percent compared with last year.",
    "Triton batches concurrent requests so the model runs fewer, larger executions.",
    "Where is the nearest train station?",
    "Please send the signed contract back before Friday so we can start the project on time.",
    "A cat sat on the warm windowsill and watched the rain.",
    "What are the side effects of ibuprofen?",
    "The new firmware fixes a memory leak that slowly exhausted the device after several days.",
    "Cheap flights to Lisbon in March",
    "Our support team answers most questions within two hours on working days.",
    "Mix the flour and the butter, then add the eggs one at a time while stirring.",
    "The committee postponed its decision until the environmental study is complete.",
    "Is the museum open on Mondays?",
    "Latency above the service level objective triggers an alert for the on-call engineer.",
    "Solar panels produce less power in winter because the days are shorter.",
    "Return policy for damaged items",
)


def corpus_sentences() -> list[str]:
    """The project's text corpus (``tritonctl.corpus.sentences()``), or a small built-in one."""
    try:
        from tritonctl.corpus import sentences  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return list(FALLBACK_SENTENCES)
    return list(sentences())


def realistic_texts(
    sentences: Sequence[str],
    count: int = 512,
    *,
    seed: int = 0,
    median_words: float = 14.0,
    sigma: float = 0.75,
    max_words: int = 200,
) -> list[str]:
    """``count`` texts whose word counts follow a log-normal mix, built from ``sentences``.

    Real traffic to an embedding service is mostly short queries and single sentences with a
    long tail of paragraphs; a log-normal word count (median ``median_words``) models that.
    Short targets pick a whole sentence of about that length; long ones join sentences.
    """
    pool = [s.strip() for s in sentences if s and s.strip()]
    if not pool:
        raise ValueError("realistic_texts needs at least one non-empty sentence")
    rng = random.Random(seed)
    by_length = sorted(pool, key=lambda s: len(s.split()))
    lengths = [len(s.split()) for s in by_length]
    texts: list[str] = []
    for _ in range(count):
        target = int(
            min(max(round(rng.lognormvariate(math.log(median_words), sigma)), 2), max_words)
        )
        if target <= lengths[-1]:
            # Sentences within 25% of the target, else the nearest one.
            close = [
                s
                for s, n in zip(by_length, lengths, strict=True)
                if abs(n - target) <= max(1, target // 4)
            ]
            if not close:
                close = [min(by_length, key=lambda s: abs(len(s.split()) - target))]
            texts.append(rng.choice(close))
            continue
        parts: list[str] = []
        words = 0
        while words < target:
            sentence = rng.choice(pool)
            parts.append(sentence)
            words += len(sentence.split())
        texts.append(" ".join(parts))
    return texts


@lru_cache(maxsize=4)
def text_pool(count: int = 512, seed: int = 0) -> tuple[bytes, ...]:
    """UTF-8 texts for ``TEXT`` inputs (cached per process)."""
    return tuple(t.encode("utf-8") for t in realistic_texts(corpus_sentences(), count, seed=seed))


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_images(size: int = 32) -> tuple[list[bytes], list[int]]:
    """Every scikit-learn digit as a grayscale PNG of ``size``×``size`` pixels, and its label.

    The 8×8 images hold 0..16; they are scaled to 0..255 and upsampled (nearest neighbour, so
    downsampling them again gives the original pixels back).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    encoded = []
    for image in images:
        picture = Image.fromarray(image)
        if size != 8:
            picture = picture.resize((size, size), Image.Resampling.NEAREST)
        encoded.append(encode_png(np.asarray(picture)))
    return encoded, [int(label) for label in digits.target]


@lru_cache(maxsize=4)
def image_pool(size: int = 32) -> tuple[bytes, ...]:
    """PNG bytes for ``IMAGE`` inputs (cached per process)."""
    return tuple(digit_images(size)[0])


@lru_cache(maxsize=4)
def image_arrays(size: int = 32) -> tuple[np.ndarray, ...]:
    """The pool's images as pixel arrays, for making unique variants."""
    from PIL import Image

    return tuple(np.asarray(Image.open(io.BytesIO(png))) for png in image_pool(size))


UNIQUE_DEFAULT = os.environ.get("TRITON_UNIQUE_PAYLOADS", "1") not in ("0", "false", "no")
_serial = itertools.count()


def unique_text(text: bytes, serial: int) -> bytes:
    return text + f" #{serial}".encode()


def unique_image(image: np.ndarray, serial: int) -> bytes:
    """``image`` with one pixel shifted by a grey level or a few (which one depends on ``serial``)."""
    variant = image.copy()
    flat = variant.reshape(-1)
    index = serial % flat.size
    flat[index] = (int(flat[index]) + 1 + serial // flat.size) % 256
    return encode_png(variant)


def is_image_input(name: str) -> bool:
    upper = name.upper()
    return any(key in upper for key in ("IMAGE", "IMG", "PNG", "JPEG", "PICTURE"))


def sample_bytes(
    name: str, shape: Sequence[int], rng: random.Random, unique: bool = UNIQUE_DEFAULT
) -> np.ndarray:
    """A BYTES tensor for input ``name``: images for image-like names, texts otherwise."""
    image = is_image_input(name)
    pool = image_pool() if image else text_pool()
    size = int(np.prod(shape)) if len(shape) else 1
    picks = [rng.randrange(len(pool)) for _ in range(size)]
    if not unique:
        items = [pool[i] for i in picks]
    elif image:
        items = [unique_image(image_arrays()[i], next(_serial)) for i in picks]
    else:
        items = [unique_text(pool[i], next(_serial)) for i in picks]
    return np.array(items, dtype=np.object_).reshape(tuple(shape))


def sample_numeric(shape: Sequence[int], dtype: np.dtype, rng: random.Random) -> np.ndarray:
    """Random values for a numeric input of a model we have no better payload for."""
    generator = np.random.default_rng(rng.randrange(2**32))
    if np.issubdtype(dtype, np.floating):
        return generator.random(tuple(shape)).astype(dtype)
    if dtype == np.bool_:
        return generator.integers(0, 2, tuple(shape)).astype(np.bool_)
    return generator.integers(0, 100, tuple(shape)).astype(dtype)
