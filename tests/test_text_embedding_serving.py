"""The served text-embedding pipeline on the real Triton server.

``TEXT`` → ``tokenizer`` → ``text_encoder`` / ``text_encoder_int8`` → ``pooling``, compared
with the in-process reference (transformers + masked mean pooling + L2 normalisation), over
gRPC and HTTP; batching seen in Triton's statistics; the response cache seen in its metrics;
bad input failing only its own request.
"""

from __future__ import annotations

import os
import queue
import re
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonctl.client import InferenceError, cosine_matrix, embed
from tritonctl.corpus import sentences
from tritonctl.server import LocalTriton

pytestmark = pytest.mark.server
Outcome = np.ndarray | InferenceServerException

#: a spread of the corpus: short, long, questions, code, numbers, non-Latin, emoji
SAMPLE = sentences()[::12]
LONG_TEXT = " ".join(f"word{i % 97} and more" for i in range(3334))  # ~10,000 words


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    """``texts -> [N, 384]`` from PyTorch, one sentence at a time (no padding at all)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from tritonctl.recipes.text.export import weights_dir

    model = AutoModel.from_pretrained(str(weights_dir())).eval()
    tokenizer = Tokenizer.from_file(str(weights_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)

    def run(texts: list[str]) -> np.ndarray:
        rows = []
        with torch.no_grad():
            for text in texts:
                ids = torch.tensor([tokenizer.encode(text).ids])
                hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
                pooled = hidden.mean(dim=1)[0].numpy()
                rows.append(pooled / np.linalg.norm(pooled))
        return np.array(rows)

    return run


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def burst(server: LocalTriton, model: str, items: list[bytes]) -> list[Outcome]:
    """Every item as its own concurrent gRPC request; the answers in order."""
    client = grpcclient.InferenceServerClient(server.grpc_address)
    done: queue.Queue[tuple[int, Outcome]] = queue.Queue()
    try:
        for index, item in enumerate(items):
            tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[item]], dtype=np.object_))

            def callback(result, error, index=index):  # type: ignore[no-untyped-def]
                done.put((index, error if error is not None else result.as_numpy("EMBEDDING")[0]))

            client.async_infer(model, [tensor], callback)
        answers = dict(done.get(timeout=120) for _ in items)
    finally:
        client.close()
    return [answers[i] for i in range(len(items))]


def _counts(server: LocalTriton, model: str) -> tuple[int, int]:
    """(inference count, execution count) of ``model`` so far, from Triton's statistics."""
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        entry = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


def _fresh(texts: list[str], protocol: str) -> list[str]:
    """``texts`` made unique to this run and protocol: no response cache entry can answer them
    (the [http] run of a test would otherwise be answered from what its [grpc] run cached)."""
    nonce = f"{protocol}-{uuid.uuid4().hex[:8]}"
    return [f"{text} [{nonce}]" for text in texts]


@pytest.mark.parametrize(
    ("model", "encoder", "min_cosine"),
    [
        ("text_embedding", "text_encoder", 0.9999),
        ("text_embedding_int8", "text_encoder_int8", 0.99),
    ],
)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_embeddings_match_the_reference(  # type: ignore[no-untyped-def]
    triton: LocalTriton, reference, protocol: str, model: str, encoder: str, min_cosine: float
) -> None:
    url = triton.grpc_address if protocol == "grpc" else triton.http_address
    texts = _fresh(SAMPLE, protocol)
    before = _counts(triton, encoder)
    served = embed(texts, url, protocol=protocol, model=model)  # type: ignore[arg-type]
    inferred = _counts(triton, encoder)[0] - before[0]
    # The encoder computed every one of them: nothing came from the ensemble's response cache.
    assert inferred == len(texts), f"{encoder} ran {inferred} of {len(texts)} texts"
    assert served.shape == (len(texts), 384) and served.dtype == np.float32
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    assert _cosines(served, reference(texts)).min() >= min_cosine


def test_similar_sentences_are_closer_than_unrelated_ones(triton: LocalTriton) -> None:
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market crashed."]
    similarity = cosine_matrix(embed(texts, triton.grpc_address))
    assert similarity[0, 1] > 0.6 > similarity[0, 2]


def test_the_encoder_executes_batches_under_concurrency(triton: LocalTriton) -> None:
    inferences, executions = _counts(triton, "text_encoder")
    tag = uuid.uuid4().hex[:8]  # fresh texts: the ensemble's cache must not answer them
    items = [f"Request {i} of burst {tag} about sentence embeddings.".encode() for i in range(48)]
    answers = burst(triton, "text_embedding", items)
    assert all(isinstance(a, np.ndarray) for a in answers)
    new_inferences, new_executions = _counts(triton, "text_encoder")
    inferred, executed = new_inferences - inferences, new_executions - executions
    assert inferred == len(items)
    assert executed < inferred, f"{inferred} inferences in {executed} executions: no batching"


def _cache_hits(server: LocalTriton, model: str) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf'^nv_cache_num_hits_per_model{{model="{model}".*}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_repeated_request_is_served_from_the_cache(triton: LocalTriton) -> None:
    text = f"Cache me if you can {uuid.uuid4().hex}"
    before = _cache_hits(triton, "text_embedding")
    first = embed([text], triton.grpc_address)
    second = embed([text], triton.grpc_address)
    assert _cache_hits(triton, "text_embedding") >= before + 1
    assert np.array_equal(first, second)


def test_one_request_can_carry_several_texts(triton: LocalTriton, reference) -> None:  # type: ignore[no-untyped-def]
    texts = _fresh(
        ["Short.", "A noticeably longer sentence that lands in a bigger padding bucket " * 3],
        "http",
    )
    before = _counts(triton, "text_encoder")[0]
    served = embed(texts, triton.http_address, protocol="http")
    assert _counts(triton, "text_encoder")[0] - before == len(texts)
    assert _cosines(served, reference(texts)).min() >= 0.9999


def test_bad_input_fails_only_its_own_request(triton: LocalTriton, reference) -> None:  # type: ignore[no-untyped-def]
    good = {
        "long": LONG_TEXT,
        "emoji": "Deploy is green ✅🚀 and everyone is happy 😀",
        "cjk": "机器学习模型需要大量的数据。",
        "arabic": "مرحبا، كيف حالك اليوم؟",
        "plain": "The quick brown fox jumps over the lazy dog.",
    }
    bad = {
        "invalid-utf8": (b"caf\xc3\x28 \xff", r"not valid UTF-8: byte 0xc3 at offset 3"),
        "empty": (b"", r"empty"),
        "whitespace": (b" \t\n ", r"empty or whitespace only"),
        "too-long": (b"x" * (300 * 1024), r"too long: \d+ bytes"),
    }
    good = dict(zip(good, _fresh(list(good.values()), "grpc"), strict=True))
    items = [t.encode() for t in good.values()] * 3 + [b for b, _ in bad.values()] * 3
    before = _counts(triton, "text_encoder")[0]
    answers = burst(triton, "text_embedding", items)
    # The good texts were computed in this burst, alongside the bad ones (not cached answers).
    assert _counts(triton, "text_encoder")[0] - before >= len(good)

    expected = reference(list(good.values()))
    for position, answer in enumerate(answers[: len(good) * 3]):
        assert isinstance(answer, np.ndarray), f"{list(good)[position % len(good)]}: {answer}"
        assert _cosines(answer[None], expected[position % len(good)][None])[0] >= 0.9999
    for position, answer in enumerate(answers[len(good) * 3 :]):
        name, (_, says) = list(bad.items())[position % len(bad)]
        assert isinstance(answer, InferenceServerException), name
        assert answer.status() == "StatusCode.INVALID_ARGUMENT", (name, answer)
        assert re.search(says, answer.message()), (name, answer.message())
    assert triton.is_ready()


def test_an_empty_batch_is_refused_clearly(triton: LocalTriton) -> None:
    # Triton itself refuses a zero-item batch before any model runs (the tokenizer would too).
    with pytest.raises(InferenceError, match=r"expected 1 string elements .*'TEXT'.* got 0"):
        tensor = grpcclient.InferInput("TEXT", [0, 1], "BYTES")
        tensor.set_data_from_numpy(np.zeros((0, 1), dtype=np.object_))
        from tritonctl.client import infer

        infer(triton.grpc_address, "text_embedding", [tensor], ["EMBEDDING"])
    assert embed([], triton.grpc_address).shape == (0, 384)


def test_cli_infer_prints_vectors_and_similarity(triton: LocalTriton, capsys) -> None:  # type: ignore[no-untyped-def]
    from tritonctl.cli import main

    code = main(["infer", "text-embedding", "A cat sleeps.", "A kitten naps.", "--url", triton.http_address,
                 "--protocol", "http"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "2 embedding(s) of dimension 384" in out and "cosine similarity" in out
    assert "1.000" in out


def test_cli_infer_reports_a_server_error(triton: LocalTriton, capsys) -> None:  # type: ignore[no-untyped-def]
    from tritonctl.cli import main

    code = main(["infer", "text-embedding", " ", "--url", triton.grpc_address])
    assert code == 2  # refused by the server as the caller's input
    assert "empty or whitespace only" in capsys.readouterr().err


def test_example_script_runs(triton: LocalTriton) -> None:
    import runpy

    path = Path(__file__).resolve().parents[1] / "scripts" / "example_client.py"
    module = runpy.run_path(str(path))
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(triton.http_address)
    grpc = grpcclient.InferenceServerClient(triton.grpc_address)
    try:
        a = module["embed"](grpc, grpcclient, ["Hello world."])
        b = module["embed"](http, httpclient, ["Hello world."])
    finally:
        http.close()
        grpc.close()
    assert a.shape == (1, 384) and np.allclose(a, b, atol=1e-6)
