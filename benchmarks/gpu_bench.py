"""GPU rows: a PyTorch FP16 MiniLM encoder in a Python backend, with and without dynamic batching.

Self-contained on purpose. It runs on a GPU machine that has PyTorch (CUDA) and numpy but no
tritonclient, no transformers, no tokenizers and no network: the real ``tritonserver`` comes
from the ``nvidia-pytriton`` wheel (unzipped, never pip-installed, so no dependency is needed),
the weights and the pre-tokenized requests come from one ``.npz`` file made beforehand where
``transformers`` is installed, and the client speaks the KServe v2 HTTP protocol with the
binary-tensor extension over ``http.client``.

Two steps:

1. Where the project is installed (CPU is fine)::

       python benchmarks/gpu_bench.py export --out minilm_fp16.npz

   writes all-MiniLM-L6-v2's weights in FP16 (about 45 MB, ``numpy.savez``: no pickle) and both
   corpora tokenized and padded to the pipeline's length buckets.

2. On the GPU machine, with the wheel and that file beside this script::

       python gpu_bench.py run --wheel nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl \\
           --weights minilm_fp16.npz --device cuda

   It starts tritonserver with two copies of the same Python model, ``minilm_batched``
   (``dynamic_batching``, max batch 64) and ``minilm_single`` (no batching), checks the served
   embeddings against the model run in this process (FP16: cosine ≥ 0.999), and prints
   throughput (texts/s) and p50/p95/p99 latency at concurrency 1, 4, 16, 64 and 128 for each,
   with the batched/unbatched ratio per concurrency (Triton's own tutorial reports about 3.3x
   from dynamic batching on a GPU). ``--json out.json`` saves the rows.

The encoder is BERT written out in PyTorch (6 layers, 384 wide, 12 heads, GELU), masked mean
pooling and L2 normalisation, so no ``transformers`` is needed on the GPU machine;
``python gpu_bench.py check --weights minilm_fp16.npz`` compares it with ``transformers`` where
that is installed (FP32 on the CPU: cosine ≥ 0.9999).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

BUCKETS = (16, 32, 64, 128)
HIDDEN, HEADS, LAYERS = 384, 12, 6
MODELS = {"minilm_batched": True, "minilm_single": False}
CONCURRENCIES = (1, 4, 16, 64, 128)

MODEL_PY = """
import json, os
import numpy as np
import torch
import triton_python_backend_utils as pb_utils
import gpu_bench


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        weights = params["weights"]["string_value"]
        device = params["device"]["string_value"]
        self.encoder = gpu_bench.Encoder.load(weights, device)

    def execute(self, requests):
        ids = [pb_utils.get_input_tensor_by_name(r, "input_ids").as_numpy() for r in requests]
        sizes = [len(i) for i in ids]
        width = max(i.shape[1] for i in ids)
        batch = np.zeros((sum(sizes), width), dtype=np.int64)
        row = 0
        for item in ids:
            batch[row : row + len(item), : item.shape[1]] = item
            row += len(item)
        out = self.encoder.embed(batch)
        bounds = np.cumsum(sizes)[:-1]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", part)])
            for part in np.split(out, bounds)
        ]
"""


# The encoder -------------------------------------------------------------------------------


class Encoder:
    """all-MiniLM-L6-v2 in plain PyTorch: BERT + masked mean pooling + L2 normalisation."""

    def __init__(self, weights: dict[str, np.ndarray], device: str, dtype: str = "auto") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if dtype == "auto":
            dtype = "float16" if self.device.type == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)
        self.w = {
            k: torch.from_numpy(np.asarray(v, dtype=np.float32)).to(self.device, self.dtype)
            for k, v in weights.items()
            if not k.startswith("corpus_")
        }

    @classmethod
    def load(cls, path: str, device: str, dtype: str = "auto") -> Encoder:
        with np.load(path, allow_pickle=False) as data:
            return cls({k: data[k] for k in data.files}, device, dtype)

    def _layer_norm(self, x, name):  # type: ignore[no-untyped-def]
        return self.torch.nn.functional.layer_norm(
            x, (HIDDEN,), self.w[f"{name}.weight"], self.w[f"{name}.bias"], eps=1e-12
        )

    def _linear(self, x, name):  # type: ignore[no-untyped-def]
        return self.torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def embed(self, ids: np.ndarray) -> np.ndarray:
        torch, w = self.torch, self.w
        with torch.inference_mode():
            input_ids = torch.from_numpy(ids).to(self.device)
            mask = (input_ids != 0).to(self.dtype)
            n, s = input_ids.shape
            x = (
                w["embeddings.word_embeddings.weight"][input_ids]
                + w["embeddings.position_embeddings.weight"][:s][None]
                + w["embeddings.token_type_embeddings.weight"][0][None, None]
            )
            x = self._layer_norm(x, "embeddings.LayerNorm")
            bias = (1.0 - mask)[:, None, None, :] * torch.finfo(self.dtype).min
            head = HIDDEN // HEADS
            for i in range(LAYERS):
                p = f"encoder.layer.{i}"

                def split(t):  # type: ignore[no-untyped-def]
                    return t.view(n, s, HEADS, head).transpose(1, 2)

                q = split(self._linear(x, f"{p}.attention.self.query"))
                k = split(self._linear(x, f"{p}.attention.self.key"))
                v = split(self._linear(x, f"{p}.attention.self.value"))
                a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
                a = a.transpose(1, 2).reshape(n, s, HIDDEN)
                x = self._layer_norm(
                    self._linear(a, f"{p}.attention.output.dense") + x,
                    f"{p}.attention.output.LayerNorm",
                )
                h = torch.nn.functional.gelu(self._linear(x, f"{p}.intermediate.dense"))
                x = self._layer_norm(
                    self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm"
                )
            weights = mask[..., None]
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2.0, dim=1, eps=1e-12)
            return pooled.cpu().numpy().astype(np.float32)


# export / check (where the project is installed) ---------------------------------------------


def export(out: Path) -> None:
    """Weights in FP16 and both corpora tokenized, padded to their bucket, into one ``.npz``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tokenizers import Tokenizer

    from tritonctl.corpus import sentences
    from tritonctl.recipes.text.export import load_model, weights_dir
    from tritonctl.short_corpus import short_texts

    model = load_model(weights_dir())
    arrays = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    arrays = {k: v for k, v in arrays.items() if not k.startswith("pooler")}
    tokenizer = Tokenizer.from_file(str(weights_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(BUCKETS[-1])
    for name, texts in (("short", short_texts()), ("long", sentences())):
        encodings = tokenizer.encode_batch(texts)
        ids = np.zeros((len(texts), BUCKETS[-1]), dtype=np.int32)
        lengths = np.zeros(len(texts), dtype=np.int32)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            lengths[row] = len(e.ids)
        arrays[f"corpus_{name}_ids"] = ids
        arrays[f"corpus_{name}_lengths"] = lengths
    np.savez(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")


def corpus(weights: Path, name: str) -> list[np.ndarray]:
    """Requests: one text each, padded to its bucket (the dynamic batcher joins equal shapes)."""
    with np.load(weights, allow_pickle=False) as data:
        ids, lengths = data[f"corpus_{name}_ids"], data[f"corpus_{name}_lengths"]
    out = []
    for row, length in zip(ids, lengths, strict=True):
        width = next(b for b in BUCKETS if b >= length)
        out.append(row[None, :width].astype(np.int64))
    return out


def check(weights: Path) -> float:
    """This encoder (FP32, CPU) against transformers' on the short corpus: min cosine."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from tritonctl.recipes.text.export import load_model, weights_dir
    from tritonctl.recipes.text.tokens import mean_pool

    model = load_model(weights_dir())
    mine = Encoder.load(str(weights), "cpu", "float32")
    worst = 1.0
    for ids in corpus(weights, "short")[:40]:
        mask = (ids != 0).astype(np.int64)
        with torch.no_grad():
            hidden = model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).last_hidden_state.numpy()
        reference = mean_pool(hidden, mask)
        worst = min(worst, float((reference * mine.embed(ids)).sum()))
    print(f"min cosine, this encoder (FP16 weights, FP32 compute) vs transformers: {worst:.6f}")
    return worst


# the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unpack_server(wheel: Path | None, server_root: Path | None, work: Path) -> Path:
    """The ``pytriton`` package folder: from the wheel (unzipped) or an installed one."""
    if server_root is not None:
        return server_root
    assert wheel is not None
    with zipfile.ZipFile(wheel) as archive:
        members = [
            m
            for m in archive.namelist()
            if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))
        ]
        archive.extractall(work, members)
    return work / "pytriton"


def write_repository(root: Path, weights: Path, device: str) -> Path:
    repo = root / "repository"
    for name, batched in MODELS.items():
        folder = repo / name / "1"
        folder.mkdir(parents=True)
        (folder / "model.py").write_text(MODEL_PY)
        shutil.copy(__file__, folder / "gpu_bench.py")
        config = [
            f'name: "{name}"',
            'backend: "python"',
            f"max_batch_size: {64 if batched else 0}",
            f'input {{ name: "input_ids" data_type: TYPE_INT64 dims: [{"-1" if batched else "-1, -1"}] }}',
            f'output {{ name: "EMBEDDING" data_type: TYPE_FP32 dims: [{"384" if batched else "-1, 384"}] }}',
            "instance_group { count: 1 kind: KIND_CPU }",
            f'parameters {{ key: "weights" value {{ string_value: "{weights.resolve()}" }} }}',
            f'parameters {{ key: "device" value {{ string_value: "{device}" }} }}',
        ]
        if batched:
            config.append("dynamic_batching { max_queue_delay_microseconds: 500 }")
        (repo / name / "config.pbtxt").write_text("\n".join(config) + "\n")
    return repo


def start_server(package: Path, repo: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    server = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    backends = work / "backends"
    shutil.copytree(server / "backends", backends)
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    for path in (
        backends / "python" / "triton_python_backend_stub",
        server / "bin" / "tritonserver",
    ):
        path.chmod(0o755)
    libs = [package.parent / "nvidia_pytriton.libs", server / "external_libs"]
    import sysconfig

    libs.append(Path(sysconfig.get_config_var("LIBDIR") or "/usr/lib"))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(p) for p in libs if p.exists()] + [env.get("LD_LIBRARY_PATH", "")]
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    http_port = free_port()
    args = [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--log-verbose=0",
    ]
    log = open(work / "tritonserver.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"tritonserver exited:\n{(work / 'tritonserver.log').read_text()[-3000:]}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return process, http_port
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError("tritonserver was not ready in 300 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# the client: KServe v2 over HTTP, binary tensors ---------------------------------------------


def request_body(ids: np.ndarray) -> tuple[bytes, int]:
    """One ``[1, bucket]`` request: both models take that shape (batch dim or not)."""
    shape = list(ids.shape)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input_ids",
                    "shape": shape,
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": ids.nbytes},
                }
            ],
            "outputs": [{"name": "EMBEDDING", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + ids.tobytes(), len(header)


def infer(
    connection: http.client.HTTPConnection, model: str, body: bytes, header_length: int
) -> np.ndarray:
    connection.request(
        "POST",
        f"/v2/models/{model}/infer",
        body=body,
        headers={
            "Inference-Header-Content-Length": str(header_length),
            "Content-Type": "application/octet-stream",
        },
    )
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    length = int(response.getheader("Inference-Header-Content-Length", "0"))
    return np.frombuffer(data[length:], dtype=np.float32).reshape(-1, HIDDEN)


def closed_loop(
    port: int, model: str, requests: list[np.ndarray], clients: int, warmup_s: float, seconds: float
) -> dict[str, float]:
    """``clients`` threads, each with its own connection; requests completing in the window count."""
    bodies = [request_body(ids) for ids in requests]
    start = time.perf_counter() + warmup_s
    end = start + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        index = offset
        mine: list[float] = []
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            body, length = bodies[index % len(bodies)]
            index += clients
            try:
                infer(connection, model, body, length)
            except Exception:  # noqa: BLE001 - counted
                with lock:
                    errors[0] += 1
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            t1 = time.perf_counter()
            if start <= t1 <= end:
                mine.append(t1 - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "throughput": len(latencies) / seconds,
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "errors": float(errors[0]),
    }


def run(args: argparse.Namespace) -> int:
    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu for a functional run")
        return 1
    work = Path(tempfile.mkdtemp(prefix="gpu_bench-"))
    process = None
    try:
        package = unpack_server(args.wheel, args.server_root, work)
        repo = write_repository(work, args.weights, device)
        process, port = start_server(package, repo, work)
        requests = corpus(args.weights, args.corpus)
        local = Encoder.load(str(args.weights), device)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        worst = 1.0
        for model in MODELS:
            for ids in requests[:32]:
                served = infer(connection, model, *request_body(ids))
                worst = min(worst, float((served * local.embed(ids)).sum()))
        print(f"served vs in-process embeddings ({device}): min cosine {worst:.5f}")
        if worst < 0.999:
            print("served embeddings disagree with the in-process encoder")
            return 1
        gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        rows = []
        for concurrency in args.concurrency:
            for rnd in range(args.rounds):
                for model in MODELS if rnd % 2 == 0 else reversed(list(MODELS)):
                    row = closed_loop(
                        port, model, requests, concurrency, args.warmup, args.duration
                    )
                    rows.append(
                        {"model": model, "concurrency": concurrency, "round": rnd + 1, **row}
                    )
                    print(
                        f"{model:15s} c={concurrency:4d} round {rnd + 1}: {row['throughput']:9.1f} texts/s"
                        f"  p50 {row['p50_ms']:7.2f}  p95 {row['p95_ms']:7.2f}  p99 {row['p99_ms']:7.2f} ms"
                        f"  errors {int(row['errors'])}",
                        flush=True,
                    )
        print(f"\n{gpu}, corpus {args.corpus}, medians over {args.rounds} round(s)")
        print("| model | c | texts/s | p50 ms | p95 ms | p99 ms | errors |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        medians: dict[tuple[str, int], float] = {}
        for concurrency in args.concurrency:
            for model in MODELS:
                mine = [r for r in rows if r["model"] == model and r["concurrency"] == concurrency]
                m = {
                    k: statistics.median(r[k] for r in mine)
                    for k in ("throughput", "p50_ms", "p95_ms", "p99_ms")
                }
                medians[(model, concurrency)] = m["throughput"]
                print(
                    f"| {model} | {concurrency} | {m['throughput']:.1f} | {m['p50_ms']:.2f} |"
                    f" {m['p95_ms']:.2f} | {m['p99_ms']:.2f} | {int(sum(r['errors'] for r in mine))} |"
                )
        print("\n| c | dynamic batching / none |\n| ---: | ---: |")
        for concurrency in args.concurrency:
            single = medians[("minilm_single", concurrency)]
            ratio = medians[("minilm_batched", concurrency)] / single if single else float("nan")
            print(f"| {concurrency} | {ratio:.2f}x |")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"device": gpu, "corpus": args.corpus, "rows": rows}, indent=2)
            )
        return 0
    finally:
        if process is not None:
            stop_server(process)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write the FP16 weights and tokenized corpora (.npz)")
    p.add_argument("--out", type=Path, default=Path("minilm_fp16.npz"))
    p = sub.add_parser("check", help="compare this encoder with transformers (CPU)")
    p.add_argument("--weights", type=Path, required=True)
    p = sub.add_parser("run", help="serve with and without dynamic batching and measure")
    p.add_argument("--weights", type=Path, required=True)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="the nvidia-pytriton 0.7.0 wheel")
    source.add_argument("--server-root", type=Path, help="an installed pytriton package folder")
    p.add_argument("--device", default="cuda")
    p.add_argument("--corpus", choices=("short", "long"), default="short")
    p.add_argument(
        "--concurrency", type=lambda v: [int(c) for c in v.split(",")], default=list(CONCURRENCIES)
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--json", default="")
    args = parser.parse_args()
    if args.command == "export":
        export(args.out)
        return 0
    if args.command == "check":
        return 0 if check(args.weights) >= 0.9999 else 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
