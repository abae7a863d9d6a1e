"""values.schema.json rejects bad values before anything renders, naming the offending key."""

from __future__ import annotations

import pytest

from tests import helm_support as hs
from tritonctl.k8s import chart


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"repository": {"source": "ftp"}}, "/repository/source"),
        ({"image": {"tag": 24.10}}, "/image/tag"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"server": {"modelControlMode": "auto"}}, "/server/modelControlMode"),
        ({"server": {"loadModels": ["text embedding"]}}, "/server/loadModels/0"),
        ({"server": {"extraArgs": ["model-repository=/x"]}}, "/server/extraArgs/0"),
        ({"autoscaling": {"provider": "vpa"}}, "/autoscaling/provider"),
        ({"autoscaling": {"minReplicas": 0}}, "/autoscaling/minReplicas"),
        ({"autoscaling": {"cpuTargetUtilization": 150}}, "/autoscaling/cpuTargetUtilization"),
        (
            {"autoscaling": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 7200}}}},
            "stabilizationWindowSeconds",
        ),
        ({"restrictedApis": {"apis": ["everything"]}}, "/restrictedApis/apis/0"),
        # The probes send no key: restricting health kills the pod (issue 16 item 4).
        ({"restrictedApis": {"apis": ["model-repository", "health"]}}, "/restrictedApis/apis/1"),
        ({"restrictedApis": {"adminKey": "short"}}, "/restrictedApis/adminKey"),
        ({"triton": {"release": "24.09"}}, "/triton/release"),
        ({"updateStrategy": {"maxSurge": "lots", "maxUnavailable": 0}}, "/updateStrategy"),
        ({"userFacingModels": []}, "/userFacingModels"),
        ({"ingress": {"grpc": {"maxBodySize": "1g"}}}, "/ingress/grpc/maxBodySize"),
        ({"autoscaling": {"scrape": "podMonitor"}}, "/autoscaling/scrape"),
        ({"autoscaling": {"keda": {"cooldownPeriod": 300}}}, "/autoscaling/keda"),
        ({"repository": {"native": {"url": "ftp://models"}}}, "/repository/native/url"),
        ({"ports": {"http": 70000}}, "/ports/http"),
        ({"shm": {"sizeLimit": "lots"}}, "/shm/sizeLimit"),
        (
            {"monitoring": {"serviceMonitor": {"interval": "often"}}},
            "/monitoring/serviceMonitor/interval",
        ),
        ({"gpu": {"enabled": "yes"}}, "/gpu/enabled"),
        ({"replicas": 3}, "replicas"),  # a typo of replicaCount
    ],
)
def test_bad_values_are_rejected(values: dict, where: str) -> None:
    with pytest.raises(chart.ChartError) as error:
        hs.render(values)
    assert where in str(error.value)


def test_defaults_and_every_combination_pass_the_schema() -> None:
    import helm_python

    with helm_python.Chart.load(hs.CHART) as loaded:
        for values in hs.COMBINATIONS.values():
            loaded.validate_schema(values)


def test_readme_documents_every_value() -> None:
    import yaml

    readme = (hs.CHART / "README.md").read_text()
    values = yaml.safe_load((hs.CHART / "values.yaml").read_text())
    schema = __import__("json").loads((hs.CHART / "values.schema.json").read_text())
    for key, value in values.items():
        assert key in schema["properties"], f"{key} is not in values.schema.json"
        if isinstance(value, dict) and value and f"| `{key}` |" not in readme:
            for sub in value:
                assert f"`{key}.{sub}" in readme, (
                    f"{key}.{sub} is missing from the README's values table"
                )
        else:
            assert f"`{key}`" in readme, f"{key} is missing from the README's values table"
