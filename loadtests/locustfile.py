"""Load test for models served by Triton, over gRPC or HTTP.

Plain Locust runs it (``tritonctl loadtest`` does the same, and adds SLO checks and a report)::

    TRITON_MODEL=text_embedding TRITON_PROTOCOL=grpc \\
        locust -f loadtests/locustfile.py --host grpc://127.0.0.1:8001 --headless -u 8 -r 8 -t 60s

Environment:
    TRITON_MODEL      model to call (default ``text_embedding``); any served model works
    TRITON_PROTOCOL   ``grpc`` (default) or ``http``; --host is that endpoint
    TRITON_BATCH      items per request (default 1)
    TRITON_WAIT_S     think time between a user's requests (default 0: closed loop)
    LOADTEST_ARRIVAL_RATE   open loop: requests per second per user, sent whatever the
                      answers; latency counts from when each was due (see triton_user.py)
    LOADTEST_ARRIVALS ``poisson`` (default) or ``constant`` (see arrivals.py)
    LOADTEST_MAX_IN_FLIGHT  open loop: requests in flight per user at most (default 256)
    LOADTEST_SHAPE    ``constant`` (default), ``step`` or ``ramp`` (see shapes.py)
    LOADTEST_WARMUP_S, LOADTEST_DURATION_S, LOADTEST_OUTPUT_DIR, TRITON_METRICS_URL,
    LOADTEST_SERVER_PID   see measurement.py

Exactly one User class is concrete: the one for TRITON_MODEL and TRITON_PROTOCOL.
"""

from __future__ import annotations

# gRPC's C core must use gevent's loop before any channel exists, or every call blocks the
# whole Locust process (one request at a time, whatever the user count).
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import os  # noqa: E402

import gevent  # noqa: E402
import measurement  # noqa: E402, F401  (registers the warm-up and /metrics hooks)
import payloads  # noqa: E402
from locust import events  # noqa: E402
from shapes import RampLoadShape, StepLoadShape  # noqa: E402, F401  (the selected one runs)
from triton_user import TritonUser, close_all_clients  # noqa: E402

MODEL = os.environ.get("TRITON_MODEL", "text_embedding")
PROTOCOL = os.environ.get("TRITON_PROTOCOL", "grpc").lower()
if PROTOCOL not in ("grpc", "http"):
    raise ValueError(f"TRITON_PROTOCOL={PROTOCOL!r}: use grpc or http")
KNOWN_MODELS = ("text_embedding", "digit_classifier")


def _selected(model: str | None, protocol: str) -> bool:
    """Whether this class is the one to run (``model=None``: any model without its own class)."""
    wanted = MODEL if MODEL in KNOWN_MODELS else None
    return model == wanted and protocol == PROTOCOL


class TextEmbeddingGrpcUser(TritonUser):
    """Sentences of realistic lengths to the ``text_embedding`` ensemble over gRPC."""

    abstract = not _selected("text_embedding", "grpc")
    model = "text_embedding"
    protocol = "grpc"


class TextEmbeddingHttpUser(TritonUser):
    """Sentences of realistic lengths to the ``text_embedding`` ensemble over HTTP."""

    abstract = not _selected("text_embedding", "http")
    model = "text_embedding"
    protocol = "http"


class DigitClassifierGrpcUser(TritonUser):
    """PNG-encoded handwritten digits to the ``digit_classifier`` ensemble over gRPC."""

    abstract = not _selected("digit_classifier", "grpc")
    model = "digit_classifier"
    protocol = "grpc"


class DigitClassifierHttpUser(TritonUser):
    """PNG-encoded handwritten digits to the ``digit_classifier`` ensemble over HTTP."""

    abstract = not _selected("digit_classifier", "http")
    model = "digit_classifier"
    protocol = "http"


class ModelGrpcUser(TritonUser):
    """Any other model (e.g. ``text_embedding_int8``): payloads from its metadata, over gRPC."""

    abstract = not _selected(None, "grpc")
    model = MODEL
    protocol = "grpc"


class ModelHttpUser(TritonUser):
    """Any other model: payloads from its metadata, over HTTP."""

    abstract = not _selected(None, "http")
    model = MODEL
    protocol = "http"


@events.init.add_listener
def _build_payloads(**_: object) -> None:
    """Build the known models' payload pools before the test starts, so that never counts.

    (Other models build theirs in the first user's ``on_start``, during the warm-up.)
    """
    if MODEL.startswith("digit_classifier"):
        payloads.image_arrays()  # about a second: 1,797 PNG encodings
    elif MODEL.startswith("text_embedding"):
        payloads.text_pool()
    # gevent's timers count from the loop's cached clock, which went stale while the imports
    # and the pools above blocked: without this, Locust's --run-time timer (set next) fires
    # seconds early and the measured window comes out shorter than asked.
    gevent.get_hub().loop.update_now()


@events.quitting.add_listener
def _close_clients(**_: object) -> None:
    """Close every client while gevent's loop still runs (see ``triton_user.close_client``)."""
    close_all_clients()
