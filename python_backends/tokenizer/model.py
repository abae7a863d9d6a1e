"""Triton Python model ``tokenizer``: ``TEXT`` (BYTES) → ``input_ids``, ``attention_mask`` (INT64).

Uses the fast ``tokenizers`` library with the model's own ``tokenizer.json`` (copied next to
this file by the build), truncating at ``max_length`` tokens (config parameter, 256).

All texts of all requests in an ``execute`` call are tokenized in one ``encode_batch`` call.
Each request's output is padded to the smallest length bucket (config parameter
``length_buckets``, e.g. 16/32/64/128/256) holding its longest text: Triton's dynamic batcher
joins only requests of equal shape, so bucketing lets the encoder batch requests of similar
length instead of running each alone.

Bad input fails only its own request, with INVALID_ARG and a message naming the problem:
a text that is not valid UTF-8 (the item and byte offset are named), a text with no content
token (empty, whitespace, or only characters the normaliser drops: zero-width and format
characters such as U+200B, U+FEFF or a soft hyphen, control characters, lone combining
accents; there is nothing to embed, and an embedding of ``[CLS] [SEP]`` alone would look like
any other and silently pollute a search index), more than ``max_text_bytes`` bytes (config
parameter), or a request with zero texts. Text longer than ``max_length`` tokens is truncated,
not refused: a 10,000-word document embeds its first 256 tokens.

Cost is bounded by what ``max_length`` tokens can need, not by the text's size: only the first
``max_text_chars`` characters (config parameter, default 16 × ``max_length``, cut at a word
boundary) are tokenized. English prose needs about 4.5 characters per token (256 tokens: about
1,150 characters), so the cut changes nothing for real text; a text whose first
``max_text_chars`` characters hold fewer than ``max_length`` tokens (long runs of whitespace,
or of words of over 100 characters, which WordPiece turns into one ``[UNK]`` each) embeds
that prefix. Without the cut the tokenizer normalises and splits the whole text before
truncating: 8 texts of 256 KB took about 1 s of the only instance.

Metrics (``pb_utils.MetricFamily`` counters, label ``model="tokenizer"``), four increments per
``execute`` whatever the batch: ``tritonctl_tokenizer_requests_total`` and
``tritonctl_tokenizer_texts_total`` (valid requests and texts), ``tritonctl_tokenizer_tokens_total``
(tokens after truncation, ``[CLS]``/``[SEP]`` included; tokens per request =
``rate(tokens_total) / rate(requests_total)``) and ``tritonctl_tokenizer_truncated_total``
(texts cut at ``max_length`` tokens or at ``max_text_chars``).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

_COUNTERS = {
    "requests": "requests tokenized (refused ones not counted)",
    "texts": "texts tokenized",
    "tokens": "tokens produced, after truncation, special tokens included",
    "truncated": "texts longer than max_length tokens or max_text_chars, cut to it",
}


def _param(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value else default


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.max_length = int(_param(config, "max_length", "256"))
        self.max_bytes = int(_param(config, "max_text_bytes", str(256 * 1024)))
        self.max_chars = int(_param(config, "max_text_chars", str(16 * self.max_length)))
        buckets = _param(config, "length_buckets", "16,32,64,128,256")
        self.buckets = np.array(sorted(int(b) for b in buckets.split(",")))
        if self.buckets[-1] < self.max_length:
            raise pb_utils.TritonModelException(
                f"largest length bucket {self.buckets[-1]} < max_length {self.max_length}"
            )
        path = os.path.join(args["model_repository"], args["model_version"], "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(path)
        self.tokenizer.no_padding()  # the shipped file pads to 128; we pad to buckets
        self.tokenizer.enable_truncation(self.max_length)
        self.metrics = {name: self._counter(name, text) for name, text in _COUNTERS.items()}

    def _counter(self, name, description):
        # The family must outlive its metric: Triton refuses to update an orphaned metric.
        family = pb_utils.MetricFamily(
            name=f"tritonctl_tokenizer_{name}_total",
            description=description,
            kind=pb_utils.MetricFamily.COUNTER,
        )
        return family, family.Metric(labels={"model": "tokenizer"})

    def _count(self, **values):
        for name, value in values.items():
            if value:
                self.metrics[name][1].increment(float(value))

    def execute(self, requests):
        responses = [None] * len(requests)
        texts, owners, cut = [], [], []  # all valid texts, their request, whether chars were cut
        for index, request in enumerate(requests):
            items = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            try:
                if len(items) == 0:
                    raise ValueError("empty batch: TEXT holds 0 items, send at least one text")
                decoded = [self._decode(item, position) for position, item in enumerate(items)]
            except ValueError as error:
                responses[index] = _invalid(str(error))
                continue
            for text in decoded:
                texts.append(self._cut(text))
                cut.append(len(texts[-1]) < len(text) and not text[len(texts[-1]) :].isspace())
            owners.extend([index] * len(decoded))

        encodings = self.tokenizer.encode_batch(texts) if texts else []
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        content = lengths - np.array([sum(e.special_tokens_mask) for e in encodings], np.int64)
        owners = np.array(owners, dtype=np.int64)
        for item in np.flatnonzero(content == 0):
            index = int(owners[item])
            if responses[index] is None:
                position = int(item - np.flatnonzero(owners == index)[0])
                where = f" in its first {self.max_chars} characters" if cut[item] else ""
                responses[index] = _invalid(
                    f"TEXT item {position} has no content{where}: only whitespace or characters "
                    "the normaliser drops (zero-width, format or control characters, lone "
                    "accents), nothing to embed"
                )
        valid = np.array([responses[i] is None for i in owners], dtype=bool)
        # Only a text at the limit can have been cut; the tokenizer keeps the rest as overflow.
        truncated = [
            i
            for i in np.flatnonzero(valid)
            if cut[i] or (lengths[i] == self.max_length and encodings[i].overflowing)
        ]
        self._count(
            requests=sum(r is None for r in responses),
            texts=int(valid.sum()),
            tokens=int(lengths[valid].sum()),
            truncated=len(truncated),
        )
        for index in range(len(requests)):
            if responses[index] is not None:
                continue
            rows = np.flatnonzero(owners == index)
            longest = int(lengths[rows].max()) if len(rows) else 1
            width = int(self.buckets[np.searchsorted(self.buckets, longest)])
            ids = np.zeros((len(rows), width), dtype=np.int64)
            for row, item in enumerate(rows):
                ids[row, : lengths[item]] = encodings[item].ids
            mask = (np.arange(width) < lengths[rows][:, None]).astype(np.int64)
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("input_ids", ids),
                    pb_utils.Tensor("attention_mask", mask),
                ]
            )
        return responses

    def _cut(self, text):
        """The first ``max_chars`` characters, ending at a word boundary if one is near."""
        if len(text) <= self.max_chars:
            return text
        start = self.max_chars - 128
        space = max(text.rfind(c, start, self.max_chars + 1) for c in " \n")
        return text[: space if space > 0 else self.max_chars]

    def _decode(self, item, position):
        if len(item) > self.max_bytes:
            raise ValueError(
                f"TEXT item {position} is too long: {len(item)} bytes (limit {self.max_bytes})"
            )
        if isinstance(item, str):
            text = item
        else:
            try:
                text = bytes(item).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"TEXT item {position} is not valid UTF-8: byte 0x{item[error.start]:02x} at "
                    f"offset {error.start} ({error.reason})"
                ) from None
        if not text.strip():
            raise ValueError(f"TEXT item {position} is empty or whitespace only: nothing to embed")
        return text


def _invalid(message):
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )
