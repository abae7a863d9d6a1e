"""Rendering the chart with Helm's engine and validating what comes out, shared by test_helm_*.

Kubernetes kinds are checked by kubernetes-validate (the API's own OpenAPI schemas, strict: no
unknown fields); the CRDs (ServiceMonitor, PrometheusRule, ScaledObject, GRPCRoute) against the
schemas vendored in fixtures/crds/, made strict the same way.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

from tritonctl.k8s import chart

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "tritonctl"
CRDS = Path(__file__).parent / "fixtures" / "crds"
RELEASE, NAMESPACE = "demo", "ml-serving"
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())

#: The CRD schemas each custom resource is validated against (every one must accept it).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("servicemonitor.json",),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("prometheusrule.json",),
    ("keda.sh/v1alpha1", "ScaledObject"): (
        "scaledobject-keda-2.16.json",
        "scaledobject-keda-2.20.json",
    ),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): ("grpcroute.json",),
}

#: Values for each combination the chart must render (merged over the defaults).
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu": {
        "gpu": {"enabled": True, "count": 1},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
    },
    "hpa-prometheus-adapter": {
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8},
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
    },
    "keda": {
        "autoscaling": {"enabled": True, "provider": "keda", "minReplicas": 1, "maxReplicas": 6}
    },
    "source-pvc": {
        "repository": {"source": "pvc", "pvc": {"claimName": "models", "subPath": "v1"}}
    },
    "source-s3sync": {
        "repository": {
            "source": "s3sync",
            "s3sync": {
                "url": "s3://models/tritonctl",
                "endpointUrl": "http://minio.storage.svc:9000",
                "credentialsSecret": "s3-credentials",
            },
        }
    },
    "source-native-s3": {
        "repository": {
            "source": "native",
            "native": {"url": "s3://models/tritonctl", "credentialsSecret": "aws"},
        }
    },
    "source-native-gs": {
        "repository": {
            "source": "native",
            "native": {"url": "gs://models/tritonctl", "credentialsSecret": "gcp"},
        }
    },
    "locust": {
        "locust": {
            "enabled": True,
            "workers": 3,
            "extraArgs": ["--headless", "-u", "32", "-t", "5m"],
        }
    },
    "ingress-gateway": {
        "ingress": {
            "enabled": True,
            "grpc": {"tls": [{"hosts": ["triton-grpc.example.com"], "secretName": "tls"}]},
        },
        "gateway": {
            "enabled": True,
            "parentRefs": [{"name": "inference-gateway", "namespace": "gateway"}],
            "hostnames": ["grpc.example.com"],
        },
    },
    "triton-24.10": {"triton": {"release": "24.10"}},
    "gitops-stable-key": {"restrictedApis": {"adminKey": "k" * 40}, "replicaCount": 2},
    "mode-none-no-restrictions": {
        "server": {"modelControlMode": "none", "loadModels": []},
        "restrictedApis": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "grpcHeadless": {"enabled": False},
    },
}


@functools.cache
def _render(key: str) -> tuple[tuple[str, str], ...]:
    values = json.loads(key)
    return tuple(chart.render(values, release=RELEASE, namespace=NAMESPACE, chart=CHART).items())


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> text (cached per values)."""
    return dict(_render(json.dumps(values or {}, sort_keys=True)))


def objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return chart.manifests(render(values))


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, (
        f"expected one {kind} *{name_suffix}, found {[d['metadata']['name'] for d in matches]}"
    )
    return matches[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def _strict(schema: Any) -> Any:
    """A structural CRD schema made strict like the API server's fieldValidation=Strict."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        if isinstance(schema.get("pattern"), str) and schema["pattern"].startswith("^(?i)"):
            # Go's RE2 accepts a flag group after ^; Python wants it first.
            schema["pattern"] = "(?i)^" + schema["pattern"][5:]
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(file: str) -> jsonschema.Draft7Validator:
    schema = json.loads((CRDS / file).read_text())
    schema.pop("$comment", None)
    strict = _strict(copy.deepcopy(schema))
    jsonschema.Draft7Validator.check_schema(strict)
    return jsonschema.Draft7Validator(strict)


def validate(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks its schema, for each Kubernetes version checked (empty: valid)."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in CRD_SCHEMAS:
        return [
            f"{file}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for file in CRD_SCHEMAS[key]
            for e in crd_validator(file).iter_errors(doc)
        ]
    problems = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"k8s {version}: {'/'.join(map(str, error.path))}: {error.message}")
    return problems
