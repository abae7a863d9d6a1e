"""Text samples for the drift tests: in-distribution traffic and three kinds of shifted traffic.

The served reference profile is computed over the whole evaluation corpus
(``corpus.sentences()``, 250 sentences), so no unseen sentence of exactly its mix exists.
In-distribution traffic is therefore the 48 held-out calibration sentences plus the corpus with
surface edits (final punctuation toggled; a leading "So,"), distinct strings so that the
ensemble's response cache does not answer them before they reach ``pooling``.

Shifted traffic, each a deterministic list of distinct texts:

- ``random_tokens``: words drawn uniformly from the tokenizer's vocabulary;
- ``source_code``: non-trivial lines of Python's own standard-library sources;
- ``german``: German sentences from a subject x verb x object grammar (the corpus has one
  German sentence out of 250).
"""

from __future__ import annotations

import inspect
import random
from itertools import product

from tritonctl.corpus import calibration_sentences, sentences


def _toggle_punctuation(text: str) -> str:
    text = text.strip()
    return text[:-1] if text and text[-1] in ".!?;" else text + "."


def in_distribution(count: int | None = None) -> list[str]:
    """Held-out calibration sentences, then corpus variants (598 distinct texts at most)."""
    corpus = sentences()
    texts = [
        *calibration_sentences(),
        *(_toggle_punctuation(t) for t in corpus),
        *(f"So, {t.strip()}" for t in corpus),
    ]
    unique = list(dict.fromkeys(t for t in texts if t not in set(corpus)))
    return unique[:count]


def random_tokens(count: int, seed: int = 0) -> list[str]:
    from tritonctl import paths
    from tritonctl.recipes.text.tokens import load_tokenizer

    tokenizer = load_tokenizer(paths.model_repository() / "tokenizer" / "1" / "tokenizer.json")
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 2)
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(5, 20))) for _ in range(count)]


def source_code(count: int) -> list[str]:
    import argparse
    import json.decoder
    import logging
    import textwrap
    import zipfile

    lines: list[str] = []
    for module in (argparse, json.decoder, logging, textwrap, zipfile):
        for line in inspect.getsource(module).splitlines():
            line = line.strip()
            code = not line.startswith(("#", '"', "'")) and any(c in line for c in "=()[]:")
            if len(line) >= 24 and code and line not in lines:
                lines.append(line)
    return lines[:count]


_SUBJECTS = [
    "Der Hund",
    "Meine Nachbarin",
    "Der alte Lehrer",
    "Das kleine Kind",
    "Unser Chef",
    "Die Katze",
    "Mein Bruder",
    "Die Ärztin",
    "Der Bäcker",
    "Eine Studentin",
]
_VERBS = ["kauft", "sucht", "vergisst", "repariert", "malt", "findet", "verkauft", "bringt"]
_OBJECTS = [
    "einen roten Regenschirm",
    "das Fahrrad im Keller",
    "die Zeitung von gestern",
    "einen großen Kuchen",
    "den Schlüssel für das Büro",
    "ein Geschenk für die Oma",
    "die alte Uhr",
    "einen Brief an den Bürgermeister",
]
_ENDINGS = [
    ".",
    " am Morgen.",
    " nach der Arbeit.",
    " im Urlaub.",
    " jeden Sonntag.",
    " trotz des Regens.",
    " ohne zu fragen.",
]


def german(count: int, seed: int = 0) -> list[str]:
    texts = [f"{s} {v} {o}{e}" for s, v, o, e in product(_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)]
    random.Random(seed).shuffle(texts)
    return texts[:count]


SHIFTED = {"random_tokens": random_tokens, "source_code": source_code, "german": german}
