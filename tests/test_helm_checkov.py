"""checkov's Kubernetes checks on the manifests of every rendered combination (checkov's Helm
framework needs a helm binary, which cannot be installed here; it runs these same Kubernetes checks
on `helm template` output, which Helm's own engine produces in-process here).

checkov pins dependencies (boto3, packaging, networkx) that clash with the project's, so it lives
in its own environment, `.venv-checkov`, made by `make checkov` (and by `make test`) from
helm/checkov-requirements.txt; $CHECKOV names another checkov binary.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import helm_support as hs
from tritonctl.k8s import chart

#: Every check the chart does not pass, with why, in one line each.
SKIPPED = {
    "CKV_K8S_11": "No CPU limit on purpose: CFS throttling stalls inference mid-request; requests size the pods and the HPA's CPU metric",
    "CKV_K8S_15": "IfNotPresent with versioned tags (the operator's own image, NGC release tags): Always adds a registry round trip to every pod start",
    "CKV_K8S_35": "Triton reads the admin key only from its command line (--http-restricted-api=...:admin-key=KEY), so the Secret reaches it as $(ADMIN_KEY)",
    "CKV_K8S_40": "uid 1000 is triton-server, the NGC image's own unprivileged user, which owns its files; runAsNonRoot and no privilege escalation hold",
    "CKV_K8S_43": "The serving image is the operator's own build and the others are NGC/Locust release tags: the chart cannot know their digests (the Dockerfile pins its bases by digest)",
    "CKV_K8S_8": "The helm test pod and the Locust workers run to completion or hold no port: there is nothing for a liveness probe to ask",
    "CKV_K8S_9": "The same pods receive no traffic through a Service, so a readiness probe gates nothing",
    "CKV2_K8S_6": "The helm test pod only calls the server; the NetworkPolicy that matters guards the server's pods, which it selects",
}


def checkov_binary() -> Path:
    explicit = os.environ.get("CHECKOV")
    path = Path(explicit) if explicit else hs.ROOT / ".venv-checkov" / "bin" / "checkov"
    if not path.exists():
        pytest.fail(
            f"checkov not found at {path}: run `make checkov` (it makes .venv-checkov from "
            "helm/checkov-requirements.txt), or set CHECKOV"
        )
    return path


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Check id -> "Kind/name in combination" for every failed check, all combinations at once."""
    root = tmp_path_factory.mktemp("checkov")
    for name, values in hs.COMBINATIONS.items():
        folder = root / name
        folder.mkdir()
        rendered = chart.render(values, release=hs.RELEASE, namespace=hs.NAMESPACE, chart=hs.CHART)
        (folder / "manifests.yaml").write_text(chart.to_yaml(rendered))
    result = subprocess.run(
        [str(checkov_binary()), "-d", str(root), "--framework", "kubernetes", "-o", "json",
         "--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: some check failed
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    found: dict[str, set[str]] = collections.defaultdict(set)
    parsed = 0
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0
        parsed += report["summary"]["resource_count"]
        for failed in report["results"]["failed_checks"]:
            combination = Path(failed["file_path"]).parts[-2]
            found[failed["check_id"]].add(f"{failed['resource']} in {combination}")
    total = sum(len(hs.objects(v)) for v in hs.COMBINATIONS.values())
    assert parsed >= total * 0.9, f"checkov read {parsed} resources of {total}"
    return found


def test_no_check_fails_without_a_justification(failures: dict[str, set[str]]) -> None:
    unexplained = {
        check: sorted(where) for check, where in failures.items() if check not in SKIPPED
    }
    assert not unexplained


def test_secrets_reach_only_triton_through_its_environment(failures: dict[str, set[str]]) -> None:
    """CKV_K8S_35's justification holds for Triton's Deployment only: every other pod (the helm
    test's) reads the admin key from a mounted file."""
    where = failures["CKV_K8S_35"]
    assert where and all(w.startswith("Deployment.") for w in where), sorted(where)


def test_every_justified_skip_is_still_needed(failures: dict[str, set[str]]) -> None:
    assert set(SKIPPED) <= set(failures), set(SKIPPED) - set(failures)
    assert all(len(reason) < 200 and reason for reason in SKIPPED.values())
