"""docs/deploy.md, followed as far as a machine without a cluster can: its values files render
with Helm's engine, and the objects its later steps name (the Service it port-forwards, the
metric it reads with ``kubectl get --raw``, the pull secrets, the HPA that ``plan``'s override
turns on) are in that render.

The walkthrough's own ``tritonctl plan`` line runs as written (on a capacity report laid out as
``loadtest --find-capacity`` writes it), and its output is rendered over the first values file,
as step 7's ``helm upgrade -f my-values.yaml -f values-override.yaml`` merges them.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_doc_commands import ROOT, _fenced_blocks, _logical_lines, values_files
from tritonctl.cli import main
from tritonctl.k8s import chart

DOC = ROOT / "docs" / "deploy.md"
RELEASE, NAMESPACE = "triton", "inference"


def _lines() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [
        line for _, start, body in _fenced_blocks(text) for _, line in _logical_lines(body, start)
    ]


def _line(pattern: str) -> str:
    found = [line for line in _lines() if re.search(pattern, line)]
    assert found, f"docs/deploy.md has no command matching {pattern!r}"
    return found[0]


def _render(*layers: dict[str, Any]) -> list[dict[str, Any]]:
    values: dict[str, Any] = {}
    for layer in layers:
        values = chart.deep_merge(values, layer)
    return chart.manifests(chart.render(values, release=RELEASE, namespace=NAMESPACE))


@pytest.fixture(scope="module")
def my_values() -> dict[str, Any]:
    files = [text for doc, _, text in values_files() if doc == "docs/deploy.md"]
    assert len(files) == 1, "docs/deploy.md should write exactly one values file (step 4)"
    return yaml.safe_load(files[0])


@pytest.fixture(scope="module")
def one_replica(my_values: dict[str, Any]) -> list[dict[str, Any]]:
    return _render(my_values)


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    names = sorted(o["metadata"]["name"] for o in objects if o["kind"] == kind)
    assert found, f"no {kind} {name!r} in the render (there are: {names})"
    return found[0]


def test_step_4_deploys_one_replica_without_an_autoscaler(one_replica: list[dict]) -> None:
    deployment = _named(one_replica, "Deployment", f"{RELEASE}-tritonctl")
    assert deployment["spec"]["replicas"] == 1
    assert not [o for o in one_replica if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]


def test_every_pod_gets_both_pull_secrets(one_replica: list[dict]) -> None:
    """Step 1 creates regcred (your registry) and ngc (nvcr.io, the helm test's SDK image)."""
    specs = [o["spec"]["template"]["spec"] for o in one_replica if o["kind"] == "Deployment"]
    specs += [o["spec"] for o in one_replica if o["kind"] == "Pod"]
    assert len(specs) >= 2  # the server and the helm test pod
    created = set(re.findall(r"create secret docker-registry (\S+)", "\n".join(_lines())))
    assert created == {"regcred", "ngc"}
    for spec in specs:
        assert {s["name"] for s in spec.get("imagePullSecrets", [])} == created


def test_the_port_forward_names_the_service_and_its_ports(one_replica: list[dict]) -> None:
    words = shlex.split(_line(r"kubectl .*port-forward svc/"))
    service = next(w for w in words if w.startswith("svc/"))[len("svc/") :]
    ports = {int(w.split(":")[1]) for w in words if re.fullmatch(r"\d+:\d+", w)}
    assert ports == {8000, 8001, 8002}
    served = {p["port"] for p in _named(one_replica, "Service", service)["spec"]["ports"]}
    assert ports <= served
    loadtest = shlex.split(_line(r"tritonctl loadtest --target"))
    target = loadtest[loadtest.index("--target") + 1]
    assert int(target.rsplit(":", 1)[1]) in ports


def test_the_service_monitor_matches_kube_prometheus_stack(one_replica: list[dict]) -> None:
    monitor = _named(one_replica, "ServiceMonitor", f"{RELEASE}-tritonctl")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert _line(r"helm install kube-prometheus-stack ")


def test_plan_then_scale_renders_the_hpa_the_checks_read(
    my_values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonctl import paths

    monkeypatch.setattr(paths, "reports_dir", lambda: tmp_path)
    report = tmp_path / "loadtest" / "20261201-030000-text_embedding-grpc-capacity"
    report.mkdir(parents=True)
    capacity = {"rps": 30.0, "mode": "open-loop", "held_runs": 2, "runs": 3}
    (report / "summary.json").write_text(json.dumps({"capacity": capacity}))

    words = shlex.split(_line(r"tritonctl plan "))
    out = words[words.index("-o") + 1]
    assert out in _line(r"helm upgrade triton .*-f " + re.escape(out))
    words[words.index("-o") + 1] = str(tmp_path / out)
    assert main(words[1:]) == 0
    override = yaml.safe_load((tmp_path / out).read_text())
    assert override["autoscaling"]["enabled"] is True

    scaled = _render(my_values, override)
    hpa = next(o for o in scaled if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == override["autoscaling"]["minReplicas"]
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Pods", "Resource"}  # the queue time, and the CPU fallback (metrics-server)
    metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    raw = _line(r"kubectl get --raw .*custom\.metrics\.k8s\.io")
    assert raw.rstrip('"').endswith(
        f"/namespaces/{NAMESPACE}/pods/*/{metric['pods']['metric']['name']}"
    )


def test_the_keda_variant_renders_a_scaled_object(my_values: dict[str, Any]) -> None:
    text = DOC.read_text(encoding="utf-8")
    inline = re.search(r"`(autoscaling: \{provider: keda.*?)`", text, re.S)
    assert inline, "docs/deploy.md no longer shows the KEDA values"
    keda = yaml.safe_load(inline.group(1).replace("\n", " "))
    keda["autoscaling"]["enabled"] = True
    scaled = _render(my_values, keda)
    assert [o for o in scaled if o["kind"] == "ScaledObject"]


def test_every_release_command_names_the_walkthroughs_release() -> None:
    """A `tritonctl deploy` or `status` line without --release/-n works on the defaults
    ("tritonctl" in "default"): a dry run then renders objects that the later steps do not name
    (`deployment/tritonctl`, not `triton-tritonctl`), and status looks at another release."""
    from tests.test_doc_commands import commands

    docs = [DOC, ROOT / "helm" / "tritonctl" / "README.md"]
    checked, wrong = 0, []
    for command in commands(docs):
        words = list(command.words)
        program = words.index("tritonctl") if "tritonctl" in words else -1
        if program < 0 or words[program + 1 : program + 2] not in (["deploy"], ["status"]):
            continue
        if len(words) == program + 2:  # a bare mention of the step's command, in prose
            continue
        checked += 1
        pairs = set(itertools.pairwise(words))
        namespace = ("-n", NAMESPACE) in pairs or ("--namespace", NAMESPACE) in pairs
        if ("--release", RELEASE) not in pairs or not namespace:
            wrong.append(str(command))
    assert checked >= 5
    assert wrong == [], f"not the walkthrough's --release {RELEASE} -n {NAMESPACE}: {wrong}"
