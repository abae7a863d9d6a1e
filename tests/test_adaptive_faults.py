"""The adaptive router under faults, through the real server: a router stub killed mid-batch,
instance-count changes, an unloaded pipeline, a bad input among queued requests, hostile
parameters.

The digits router (4 instances) on a server of its own, so that killing and reloading its
instances leaves the session's server alone. Every image carries a PNG text chunk never sent
before: the pipelines' response cache must not answer for them.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import itertools
import json
import os
import re
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.bad_input import live_pids
from tests.serving_support import digits_test_images, png
from tritonctl import paths
from tritonctl.retry import is_retryable
from tritonctl.server import LocalTriton, describe_exit, new_admin_key
from tritonctl.watchdog import StubWatchdog, _cmdline, is_dead

pytestmark = pytest.mark.server

ROUTER = "digit_classifier_adaptive"
MODELS = [ROUTER, "digit_classifier_teacher", "digit_classifier_student"]
NOTES = itertools.count()


def _server(repository: Path) -> LocalTriton:
    """The digits router and its two pipelines, under explicit model control (the tests load,
    unload and reconfigure models through the repository API, with the admin key)."""
    return LocalTriton(
        repository,
        models=MODELS,
        model_control="explicit",
        admin_key=new_admin_key(),
        exit_timeout=5,
    )


@pytest.fixture(scope="module")
def digits_server(model_repository: Path) -> Iterator[LocalTriton]:
    server = _server(model_repository).start()
    assert server.run is not None
    run = server.run.path
    try:
        yield server
    finally:
        server.kill()
    # The router's shared file lives in the server's run folder and goes with it.
    assert not run.exists(), sorted(p.name for p in run.iterdir())


def _slots_file(server: LocalTriton) -> Path:
    assert server.run is not None
    return server.run.path / f"adaptive-{ROUTER}.slots"


def _digits(count: int) -> tuple[list[bytes], list[bytes]]:
    """``count`` test-set digits as never-sent PNGs, and their labels."""
    images = digits_test_images()
    labels = np.load(paths.reports_dir() / "digits" / "test_set.npz")["labels"]
    picks = [next(NOTES) % len(images) for _ in range(count)]
    pngs = [png(images[i], note=f"fault {time.time_ns()} {i}") for i in picks]
    return pngs, [str(int(labels[i])).encode() for i in picks]


def _noise_png(size: int, seed: int) -> bytes:
    """A ``size``×``size`` grey PNG of noise: slow to decode, compresses badly."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class Answer:
    def __init__(self, result: object = None, error: InferenceServerException | None = None):
        self.error = error
        self.routes = result.as_numpy("ROUTE").reshape(-1).tolist() if result else []  # type: ignore[attr-defined]
        self.labels = result.as_numpy("LABELS")[:, 0].tolist() if result else []  # type: ignore[attr-defined]

    @property
    def status(self) -> str:
        return "ok" if self.error is None else str(self.error.status())

    @property
    def message(self) -> str:
        return "" if self.error is None else str(self.error.message())


def _infer(server: LocalTriton, images: list[bytes], **params: object) -> Answer:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    tensor = grpcclient.InferInput("IMAGE", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[i] for i in images], dtype=np.object_))
    try:
        return Answer(client.infer(ROUTER, [tensor], parameters=params or None, client_timeout=120))
    except InferenceServerException as error:
        return Answer(error=error)
    finally:
        client.close()


def _router_stubs(server: LocalTriton) -> dict[int, str]:
    """Live router stubs: pid -> instance name (the stub's argument). After an instance-count
    change two instances can carry the same name, so the pid is the key."""
    found = {}
    for pid in live_pids(server):
        argv = _cmdline(pid)
        if argv and argv[0].endswith("triton_python_backend_stub") and f"/{ROUTER}/" in argv[1]:
            found[pid] = next((a for a in argv if a.startswith(f"{ROUTER}_")), "?")
    return found


def _statistics(server: LocalTriton, model: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        entry = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


def _repository(server: LocalTriton, action: str, model: str, body: dict | None = None) -> None:
    request = urllib.request.Request(
        f"{server.url}/v2/repository/models/{model}/{action}",
        data=json.dumps(body or {}).encode(),
        headers=server.admin_headers,
    )
    with urllib.request.urlopen(request, timeout=180):
        pass


# --- 2. instance-count changes -----------------------------------------------------------------


def _mapped_files(pid: int) -> set[str]:
    """The router's shared files that ``pid`` maps (" (deleted)" marks an unlinked one)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[-1] for line in lines if "adaptive" in line and "/" in line}


def test_instances_share_one_file_across_instance_count_changes(digits_server: LocalTriton) -> None:
    """4 -> 3 -> 4 instances through the repository API: Triton adds and removes instances
    while the others keep running. An instance that removed the shared file in ``finalize``
    once left the survivors on an unlinked file and the newcomer on a new one, counting apart.
    Now every live instance maps the same file, and each owns its own slot."""
    config = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(f"{digits_server.url}/v2/models/{ROUTER}/config")
        ).read()
    )
    for count in (3, 4):
        config["instance_group"][0]["count"] = count
        _repository(digits_server, "load", ROUTER, {"parameters": {"config": json.dumps(config)}})
        # A removed instance's stub exits about 1 s after its finalize (the Python backend's
        # teardown), which may be after the load request has returned.
        stop = time.monotonic() + 30
        while len(stubs := _router_stubs(digits_server)) != count and time.monotonic() < stop:
            time.sleep(0.2)
        assert len(stubs) == count, stubs
        files = {pid: _mapped_files(pid) for pid in stubs}
        paths_seen = set().union(*files.values())
        assert len(paths_seen) == 1 and all(len(f) == 1 for f in files.values()), files
        [path] = paths_seen
        assert not path.endswith("(deleted)"), files
        owners = _slot_owners(Path(path))
        assert sorted(owners) == sorted(stubs), (owners, stubs)
    assert _infer(digits_server, _digits(3)[0]).routes == [b"accurate"] * 3


def _rows(path: Path) -> np.ndarray:
    """The router's shared file: 8 float64 header words, then rows of int64 (owner pid, owner
    start time, items in flight)."""
    return np.fromfile(path, dtype=np.int64)[8:].reshape(-1, 3)


def _slot_owners(path: Path) -> list[int]:
    """The pids that own a row of the router's shared file."""
    return [int(pid) for pid in _rows(path)[:, 0] if pid]


def _busy_rows(path: Path) -> list[list[int]]:
    return [row for row in _rows(path).tolist() if row[2]]


# --- 4. an unloaded pipeline, errors that keep their code, concurrent retries -----------------


def test_a_request_falls_back_when_its_route_is_unloaded(digits_server: LocalTriton) -> None:
    """With the fast pipeline unloaded, a request the deadline sends there is answered by the
    accurate one (it failed "not ready"); a request that forced the fast route is refused
    UNAVAILABLE, which clients retry (every error was INVALID_ARGUMENT, never retried)."""
    images, labels = _digits(3)
    _repository(digits_server, "unload", "digit_classifier_student")
    try:
        time.sleep(1)
        deadline = _infer(digits_server, images, deadline_ms=0.001)
        forced = _infer(digits_server, images, route="fast")
    finally:
        _repository(digits_server, "load", "digit_classifier_student")
    assert deadline.status == "ok", deadline.message
    assert deadline.routes == [b"accurate"] * 3 and deadline.labels == labels
    assert forced.status == "StatusCode.UNAVAILABLE", (forced.status, forced.message)
    assert forced.error is not None and is_retryable(forced.error)
    assert "route 'fast' (digit_classifier_student)" in forced.message
    assert "is not ready" in forced.message
    assert _infer(digits_server, images, route="fast").routes == [b"fast"] * 3


def test_a_bad_image_among_queued_requests_fails_alone_and_the_retries_run_together(
    digits_server: LocalTriton,
) -> None:
    """Twelve one-image requests, one of them corrupt, queued behind four slow ones so that
    one router execute takes all twelve: the joined call fails (INVALID_ARG), and each request
    is retried on its own. The retries once ran one after the other (13 calls in a row); now
    they are sent at once, and the teacher's ONNX model, which the 11 good ones reach, runs
    them in fewer executions than requests: they were in its queue together.

    A blocker may time out in image_preprocess's queue (2 s) on a loaded machine: it then gets
    UNAVAILABLE, which clients retry; the blockers are not what is tested."""
    slow = [_noise_png(512, seed) for seed in range(32)]
    images, labels = _digits(12)
    images[4] = images[4][: len(images[4]) // 2]  # truncated PNG
    before = _statistics(digits_server, "digits_teacher")
    routed = _statistics(digits_server, ROUTER)
    with cf.ThreadPoolExecutor(16) as pool:
        # route=fast: the blockers go to the student; the teacher sees only the retries.
        busy = [pool.submit(_infer, digits_server, slow, route="fast") for _ in range(4)]
        time.sleep(0.3)
        queued = [pool.submit(_infer, digits_server, [i], route="accurate") for i in images]
        answers = [f.result(timeout=300) for f in queued]
        blocked = [f.result(timeout=300) for f in busy]
    inferences, executions = np.subtract(_statistics(digits_server, "digits_teacher"), before)
    router_items, router_runs = np.subtract(_statistics(digits_server, ROUTER), routed)
    print(
        f"router: {router_items} items in {router_runs} executions; "
        f"teacher: {inferences} inferences in {executions} executions"
    )
    # The premise: the twelve were joined (at most 4 executions for the blockers).
    assert router_runs - 4 < 12, (router_items, router_runs)
    bad = answers.pop(4)
    del labels[4]
    assert bad.status == "StatusCode.INVALID_ARGUMENT", (bad.status, bad.message)
    assert re.search(r"IMAGE|truncated|cannot (decode|identify)", bad.message), bad.message
    assert [a.status for a in answers] == ["ok"] * 11, [a.message for a in answers]
    assert [a.labels[0] for a in answers] == labels
    assert all(b.status in ("ok", "StatusCode.UNAVAILABLE") for b in blocked), [
        (b.status, b.message) for b in blocked
    ]
    assert inferences == 11, inferences
    assert executions < 11, f"{inferences} teacher inferences in {executions} executions"


# --- 5. parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf"), 0.0, -5.0, True, "soon"], ids=repr
)
def test_a_deadline_must_be_a_finite_positive_number(
    digits_server: LocalTriton, value: object
) -> None:
    """NaN and infinity were accepted and ignored, and JSON ``true`` became 1 ms."""
    answer = _infer(digits_server, _digits(1)[0], deadline_ms=value)
    assert answer.status == "StatusCode.INVALID_ARGUMENT", (answer.status, answer.routes)
    assert "parameter deadline_ms must be" in answer.message, answer.message


# --- 1. a router stub killed mid-batch (last: its replaced instances stay until exit) ---------


def test_a_router_stub_killed_mid_batch_does_not_pin_the_pressure(
    digits_server: LocalTriton,
) -> None:
    """Four 64-image requests keep the four router instances busy (64 + 64 is over the batch
    limit: one request per instance); one instance's stub is SIGKILLed while it holds its 64.
    Its slot once stayed at 64 for good: every low-priority request on an idle server then
    went to the fast route, even after the watchdog's reload. Now a dead owner's row does not
    count: until the watchdog replaces the instances, Triton keeps sending the dead one its
    share ("Stub ... is not healthy", which clients retry) and every other request takes the
    accurate route; after the reload every request is answered, on the accurate route, and
    the new instances own rows (the victim's among them) and no row holds items. The file is the
    server's own, in its run folder (none in the temp folder; the fixture checks it goes with
    the folder). Last in this module: Triton keeps the replaced instances' stubs until exit."""
    server = digits_server
    slow = [_noise_png(512, seed) for seed in range(64)]  # 16 MiB decoded: the request budget
    assert _infer(server, _digits(3)[0]).routes == [b"accurate"] * 3
    slots = _slots_file(server)
    assert slots.is_file(), sorted(p.name for p in slots.parent.iterdir())
    assert server.process is not None
    assert not list(Path(tempfile.gettempdir()).glob(f"tritonctl_adaptive_{server.process.pid}_*"))
    stubs = _router_stubs(server)
    assert len(stubs) == 4, stubs
    watchdog = StubWatchdog(server)
    watchdog.snapshot()
    with cf.ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(_infer, server, slow, priority_class="high") for _ in range(4)]
        # Wait until the router holds them (sending 4 x 16 MiB takes a while on a loaded VM).
        stop = time.monotonic() + 60
        while time.monotonic() < stop:
            holding = [pid for pid, _, n in _busy_rows(slots) if n == 64 and pid in stubs]
            if len(holding) == 4 or any(f.done() for f in busy):
                break
            time.sleep(0.05)
        # An instance whose name no other stub carries: after the instance-count changes
        # above two instances can share a name, and the watchdog then takes the dead one for
        # replaced (a limit of tritonctl.watchdog, reported; not what this test is about).
        names = list(stubs.values())
        unique = [pid for pid in holding if names.count(stubs[pid]) == 1]
        assert unique, f"no uniquely named router instance holds 64 images: {_busy_rows(slots)}"
        victim = unique[0]
        os.kill(victim, signal.SIGKILL)
        outcomes = [f.result(timeout=300) for f in busy]
    assert is_dead(victim)
    assert [victim, 64] in [[r[0], r[2]] for r in _busy_rows(slots)]  # must not count
    time.sleep(0.5)  # longer than the router's 200 ms pressure hold
    before = [_infer(server, _digits(3)[0]) for _ in range(8)]
    if server.process.poll() is not None:
        # Seen in 1 of 5 runs: Triton 2.51 itself exited after the SIGKILL of a stub holding BLS
        # requests. `tritonctl serve` restarts it (test_cli_serve); the router's own recovery
        # cannot be checked on a dead server, so the run says so, loudly, instead of passing.
        pytest.xfail(
            "tritonserver exited "
            f"({describe_exit(server.process.returncode)}) after a router stub was SIGKILLed "
            f"mid-batch; log tail:\n{server.log_tail(40)}"
        )
    report = watchdog.check()
    after = [_infer(server, _digits(3)[0]) for _ in range(8)]
    failed = [a for a in before if a.status != "ok"]
    assert all(
        a.status == "StatusCode.INTERNAL" and "is not healthy" in a.message for a in failed
    ), [(a.status, a.message) for a in failed]
    assert len(failed) < 8, "no request was served between the kill and the reload"
    assert [a.routes for a in before if a.status == "ok"] == [[b"accurate"] * 3] * (8 - len(failed))
    assert [o.status for o in outcomes].count("ok") == 3, [o.message for o in outcomes]
    assert report and "reloaded" in report[0], report
    assert [(a.status, a.routes) for a in after] == [("ok", [b"accurate"] * 3)] * 8, [
        (a.status, a.message) for a in after
    ]
    # Triton 2.51 never finalizes the replaced instances once one of their stubs died after
    # serving (SECURITY.md, Faults): the old live stubs stay, idle, until the server exits. Each
    # new instance owns a row, the victim's among them; the old ones count nothing.
    new = set(_router_stubs(server)) - set(stubs)
    owners = _slot_owners(slots)
    assert len(new) == 4 and new <= set(owners) and victim not in owners, (new, owners, stubs)
    assert _busy_rows(slots) == [], _busy_rows(slots)
