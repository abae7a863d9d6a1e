"""Run a tritonctl edge bundle without Triton: ``embed(texts)`` / ``classify(images)`` and a CLI.

This file is copied into every bundle as ``runner.py``. It imports only the standard library,
numpy, and what the bundle's ``manifest.json`` names: ``tokenizers`` (text) or Pillow (images,
through ``image_preprocess.py``, a copy of the served backend's own code), and one runtime,
``onnxruntime`` or ``ai_edge_litert``. Nothing of tritonctl is needed where it runs::

    python runner.py embed "a sentence" "another"       # text bundles
    python runner.py classify digit.png                  # image bundles
    python runner.py bench --threads 1                   # cold start, p50/p95, peak RSS (JSON)

    import runner                                        # from the bundle's folder
    bundle = runner.Bundle(".")
    vectors = bundle.embed(["a sentence"])               # float32 [N, 384], unit length

Loading checks every file against the SHA-256 the manifest records, and refuses a bundle whose
files were changed after the build. Input is refused as the served ensembles refuse it, with the
same messages: empty or whitespace-only text, invalid UTF-8, over-long text, empty, undecodable
or oversized images.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

FORMAT = "tritonctl.edge_bundle/1"
MANIFEST = "manifest.json"
#: most texts per model call, as the served encoder's largest preferred batch
BATCH = 32


class BundleError(RuntimeError):
    """The bundle cannot be used: manifest missing or malformed, a file changed or missing."""


class InputError(ValueError):
    """Input the served model refuses too; the message is the server's."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(folder: str | os.PathLike[str], *, verify: bool = True) -> dict:
    """The bundle's manifest; with ``verify``, every listed file's size and SHA-256 checked."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} not found: not a tritonctl edge bundle") from None
    except (OSError, ValueError) as error:
        raise BundleError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{path}: format is {found!r}, this runner reads {FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path} lists no files")
    for name, expected in files.items():
        file = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{path} lists {name!r}, outside the bundle")
        if not file.is_file():
            raise BundleError(f"{file} is missing (listed in {MANIFEST})")
        if not verify:
            continue
        size = file.stat().st_size
        digest = sha256(file) if size == expected.get("bytes") else None
        if digest != expected.get("sha256"):
            actual = f"sha256 {digest}" if digest else f"{size:,} bytes"
            wanted = (
                f"sha256 {expected.get('sha256')}" if digest else f"{expected.get('bytes'):,} bytes"
            )
            raise BundleError(
                f"{file} does not match {MANIFEST}: it has {actual}, the manifest says {wanted} "
                "(changed or corrupted after the build; rebuild with `tritonctl build edge`)"
            )
    return manifest


def _module(folder: Path, name: str):
    """A helper module shipped in the bundle (a copy of a served backend's ``model.py``)."""
    spec = importlib.util.spec_from_file_location(f"edge_{name}_{id(folder)}", folder / name)
    if spec is None or spec.loader is None:
        raise BundleError(f"cannot import {folder / name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- runtimes ---------------------------------------------------------------------------------


class _OnnxRuntime:
    """An ORT-format (or ONNX) model on ONNX Runtime's CPU provider; inputs in graph order."""

    def __init__(self, path: Path, threads: int, output: str | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [output] if output else None  # only what is used leaves the runtime

    def __call__(self, arrays: list[np.ndarray], signature: str | None = None) -> np.ndarray:
        return self.session.run(self.outputs, dict(zip(self.inputs, arrays, strict=True)))[0]


class _LiteRT:
    """A ``.tflite`` model on the LiteRT interpreter, one signature per fixed input shape."""

    def __init__(self, path: Path, threads: int, output: str | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.runners = {
            name: self.interpreter.get_signature_runner(name)
            for name in self.interpreter.get_signature_list()
        }

    def __call__(self, arrays: list[np.ndarray], signature: str | None = None) -> np.ndarray:
        runner = self.runners[signature or next(iter(self.runners))]
        details = runner.get_input_details()
        # The converter names inputs after forward()'s positions: args_0, args_1, ...
        names = sorted(details, key=lambda n: (len(n), n))
        converted = {
            name: _to_tensor(a, details[name]) for name, a in zip(names, arrays, strict=True)
        }
        outputs = runner(**converted)
        (name, value), *_ = outputs.items()
        return _from_tensor(value, runner.get_output_details()[name])


def _to_tensor(value: np.ndarray, detail: dict) -> np.ndarray:
    """Cast (integer inputs) or quantize (INT8 inputs of a fully quantized model)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        value = np.clip(np.rint(value / scale) + zero, info.min, info.max)
    return np.ascontiguousarray(value, dtype=dtype)


def _from_tensor(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return ((value.astype(np.float32) - zero) * scale).astype(np.float32)
    return np.asarray(value, dtype=np.float32)


RUNTIMES: dict[str, type] = {"onnxruntime": _OnnxRuntime, "litert": _LiteRT}


# --- the bundle ------------------------------------------------------------------------------


class Bundle:
    """A loaded bundle: ``embed(texts)`` for text bundles, ``classify(images)`` for image ones.

    ``threads`` is the runtime's intra-op thread count (default: all cores). ``variant`` picks
    another model file of the bundle, e.g. ``"fixed_shape"`` (the NNAPI/CoreML variant).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        threads: int | None = None,
        verify: bool = True,
        variant: str | None = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.manifest = load_manifest(self.folder, verify=verify)
        self.task = self.manifest["task"]
        self.threads = threads or os.cpu_count() or 1
        runtime = self.manifest["runtime"]["name"]
        if runtime not in RUNTIMES:
            raise BundleError(f"unknown runtime {runtime!r} (this runner knows {list(RUNTIMES)})")
        self.spec = dict(self.manifest["model"])
        if variant is not None:
            variants = self.manifest.get("variants", {})
            if variant not in variants:
                raise BundleError(f"no variant {variant!r} in this bundle (has {list(variants)})")
            self.spec.update(variants[variant])
        self.model: _OnnxRuntime | _LiteRT = RUNTIMES[runtime](
            self.folder / self.spec["file"], self.threads, self.spec.get("output")
        )
        pre = self.manifest["preprocessing"]
        if self.task == "embed":
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(self.folder / pre["tokenizer"]))
            self.tokenizer.no_padding()  # the shipped file pads to 128; we pad to buckets
            self.tokenizer.enable_truncation(int(pre["max_length"]))
            self.buckets = np.array(sorted(int(b) for b in pre["length_buckets"]))
        elif self.task == "classify":
            self.images = _module(self.folder, pre["module"])
            # As the served model's initialize(): Pillow's own bomb check, behind the header
            # check, at the same limit (it is Pillow's global, so the messages match the server's).
            limit = self.images.pillow_limit(int(pre["max_image_pixels"]))
            self.images.Image.MAX_IMAGE_PIXELS = limit
            self.labels = _module(self.folder, self.manifest["postprocessing"]["module"])
        else:
            raise BundleError(f"unknown task {self.task!r}")

    # text ----------------------------------------------------------------------------------

    def tokenize(self, texts) -> list[list[int]]:
        """Token ids per text, truncated at ``max_length``; bad texts raise ``InputError``."""
        pre = self.manifest["preprocessing"]
        if isinstance(texts, (str, bytes)):
            raise InputError("texts must be a list of strings, not one string")
        items = list(texts)
        if not items:
            raise InputError("empty batch: TEXT holds 0 items, send at least one text")
        decoded = [
            _decode_text(item, position, pre["max_text_bytes"])
            for position, item in enumerate(items)
        ]
        # As the served tokenizer: only the first max_text_chars characters are tokenized, and a
        # text with no content token is refused rather than embedded as [CLS] [SEP].
        limit = int(pre.get("max_text_chars") or 16 * int(pre["max_length"]))
        texts = [_cut(text, limit) for text in decoded]
        encodings = self.tokenizer.encode_batch(texts)
        for position, (encoding, text, whole) in enumerate(
            zip(encodings, texts, decoded, strict=True)
        ):
            if len(encoding.ids) == sum(encoding.special_tokens_mask):
                cut = len(text) < len(whole) and not whole[len(text) :].isspace()
                where = f" in its first {limit} characters" if cut else ""
                raise InputError(
                    f"TEXT item {position} has no content{where}: only whitespace or characters "
                    "the normaliser drops (zero-width, format or control characters, lone "
                    "accents), nothing to embed"
                )
        return [e.ids for e in encodings]

    def embed(self, texts) -> np.ndarray:
        """Unit-length sentence embeddings, float32 ``[len(texts), dim]``."""
        if self.task != "embed":
            raise BundleError(f"{self.manifest['name']} classifies images; use classify()")
        ids = self.tokenize(texts)
        lengths = self.spec.get("fixed_lengths")
        if lengths:  # a fixed-shape model: one text at a time, at the smallest length that fits
            rows = [self._run_text([row], _fit(len(row), lengths, i)) for i, row in enumerate(ids)]
            return np.concatenate(rows)
        # As the served batcher forms batches: texts of one length bucket together, at most
        # BATCH at a time. Padding is masked out for FP32, but an INT8 model's dynamic
        # quantization takes its range over the whole padded batch, so this matters there.
        buckets = np.searchsorted(self.buckets, [len(row) for row in ids])
        out = np.zeros((len(ids), 0), dtype=np.float32)
        for bucket in np.unique(buckets):
            members = np.flatnonzero(buckets == bucket)
            for start in range(0, len(members), BATCH):
                chunk = members[start : start + BATCH]
                vectors = self._run_text([ids[i] for i in chunk], None)
                if out.shape[1] == 0:
                    out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
                out[chunk] = vectors
        return out

    def _run_text(self, ids: list[list[int]], fixed: int | None) -> np.ndarray:
        longest = max(len(row) for row in ids)
        width = fixed or int(self.buckets[np.searchsorted(self.buckets, longest)])
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
        lengths = np.array([len(t) for t in ids])
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        out = self.model([input_ids, mask], f"len_{fixed}" if fixed else None)
        if self.manifest["postprocessing"]["pooling"] == "in_graph":
            return np.asarray(out, dtype=np.float32)
        return mean_pool(out, mask)

    # images --------------------------------------------------------------------------------

    def pixels(self, images) -> np.ndarray:
        """Encoded images → float32 ``[N, 1, 8, 8]`` exactly as the served ``image_preprocess``."""
        pre = self.manifest["preprocessing"]
        if isinstance(images, (bytes, bytearray)):
            raise InputError("images must be a list of encoded images, not one bytes object")
        items = [_read(item) for item in images]
        if not items:
            raise InputError("empty batch: IMAGE holds 0 items, send at least one image")
        try:
            return self.images.preprocess(items, pre["max_image_pixels"], pre["max_image_bytes"])
        except self.images.ImageError as error:
            raise InputError(str(error)) from None

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.float32)
        if self.spec["inputs"][0]["shape"][0] == 1:  # fixed batch of one
            return np.concatenate([self.model([p[None]]) for p in pixels])
        return self.model([pixels])

    def classify(self, images, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k labels (str ``[N, k]``, most probable first) and their softmax probabilities."""
        if self.task != "classify":
            raise BundleError(f"{self.manifest['name']} embeds texts; use embed()")
        k = k or int(self.manifest["postprocessing"]["top_k"])
        labels, scores = self.labels.top_k(self.logits(self.pixels(images)), k)
        return np.vectorize(bytes.decode, otypes=[object])(labels), scores

    # either ------------------------------------------------------------------------------

    def __call__(self, inputs):
        return self.embed(inputs) if self.task == "embed" else self.classify(inputs)


def _fit(length: int, lengths: list[int], position: int) -> int:
    fits = [n for n in sorted(lengths) if n >= length]
    if not fits:
        raise InputError(
            f"TEXT item {position} has {length} tokens, over this fixed-shape model's "
            f"{max(lengths)} (the dynamic model takes up to the served max_length)"
        )
    return fits[0]


def _cut(text: str, limit: int) -> str:
    """The served tokenizer's cut: the first ``limit`` characters, at a word boundary if near."""
    if len(text) <= limit:
        return text
    space = max(text.rfind(c, limit - 128, limit + 1) for c in " \n")
    return text[: space if space > 0 else limit]


def _decode_text(item, position: int, max_bytes: int) -> str:
    """The served ``tokenizer``'s checks, in its order and with its messages."""
    data = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
    if len(data) > max_bytes:
        raise InputError(f"TEXT item {position} is too long: {len(data)} bytes (limit {max_bytes})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"TEXT item {position} is not valid UTF-8: byte 0x{data[error.start]:02x} at "
            f"offset {error.start} ({error.reason})"
        ) from None
    if not text.strip():
        raise InputError(f"TEXT item {position} is empty or whitespace only: nothing to embed")
    return text


def _read(item) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return Path(item).read_bytes()


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The served ``pooling`` model: masked mean over tokens, then L2 normalisation."""
    weights = mask.astype(np.float32)
    summed = np.einsum("nsd,ns->nd", np.asarray(hidden, dtype=np.float32), weights)
    pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


# --- benchmark --------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: ``VmHWM``, because ``ru_maxrss`` keeps the
    parent's peak across fork and exec (a runner started by a big process would report it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def bench(folder: Path, threads: int, inputs: list, runs: int, warmup: int = 5) -> dict:
    """Cold start (imports, checksums, model load, first call) and batch-1 latency percentiles."""
    start = time.perf_counter()
    bundle = Bundle(folder, threads=threads)
    loaded = time.perf_counter()
    bundle([inputs[0]])
    cold = time.perf_counter() - start
    for i in range(warmup):
        bundle([inputs[i % len(inputs)]])
    latencies = []
    for i in range(runs):
        item = inputs[i % len(inputs)]
        begin = time.perf_counter()
        bundle([item])
        latencies.append((time.perf_counter() - begin) * 1e3)
    p50, p95 = np.percentile(latencies, [50, 95])
    return {
        "bundle": bundle.manifest["name"],
        "threads": threads,
        "load_s": round(loaded - start, 4),
        "cold_start_s": round(cold, 4),
        "runs": runs,
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def samples(folder: Path, manifest: dict) -> list:
    """The sample inputs shipped in the bundle: texts from ``samples/texts.json`` or images."""
    base = folder / "samples"
    if manifest["task"] == "embed":
        return json.loads((base / "texts.json").read_text(encoding="utf-8"))
    return [p.read_bytes() for p in sorted(base.glob("*.png"))]


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=here, help="bundle folder (default: here)")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads (default: all)")
    commands = parser.add_subparsers(dest="command", required=True)
    embed = commands.add_parser("embed", help="embed texts (text bundles)")
    embed.add_argument("texts", nargs="*", help="texts (default: the bundle's samples)")
    classify = commands.add_parser("classify", help="classify image files (image bundles)")
    classify.add_argument("images", nargs="*", type=Path, help="image files (default: samples)")
    timing = commands.add_parser("bench", help="cold start, batch-1 p50/p95 and peak RSS as JSON")
    timing.add_argument("--runs", type=positive_int, default=200)
    timing.add_argument("--inputs", type=Path, help="JSON list of texts, or a folder of images")
    commands.add_parser("info", help="print the manifest")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(json.dumps(load_manifest(args.bundle), indent=2))
        elif args.command == "bench":
            manifest = load_manifest(args.bundle, verify=False)
            inputs = _bench_inputs(args.inputs) if args.inputs else samples(args.bundle, manifest)
            threads = args.threads or os.cpu_count() or 1
            print(json.dumps(bench(args.bundle, threads, inputs, args.runs)))
        else:
            bundle = Bundle(args.bundle, threads=args.threads)
            if args.command == "embed":
                texts = args.texts or samples(args.bundle, bundle.manifest)
                # The raw bytes the shell passed (Python surrogate-escapes undecodable ones), as
                # the server would receive them: a bad byte is then named as it was sent.
                vectors = bundle.embed([os.fsencode(t) for t in texts])
                for text, vector in zip(texts, vectors, strict=True):
                    print(
                        json.dumps(
                            {"text": text, "embedding": [round(float(v), 6) for v in vector]}
                        )
                    )
            else:
                files = args.images or sorted((args.bundle / "samples").glob("*.png"))
                labels, scores = bundle.classify(files)
                for file, label, score in zip(files, labels, scores, strict=True):
                    ranked = [
                        [str(a), round(float(b), 4)] for a, b in zip(label, score, strict=True)
                    ]
                    print(json.dumps({"image": str(file), "top_k": ranked}))
    except (BundleError, InputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (latency percentiles need a sample)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _bench_inputs(path: Path) -> list:
    if path.is_dir():
        return [p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()]
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
