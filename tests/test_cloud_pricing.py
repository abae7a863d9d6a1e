"""``tritonctl plan --cloud``: replicas and cost from measured capacity and a dated price file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tritonctl.cli import main
from tritonctl.cloud.pricing import PricingError, cost_plan, default_prices, load_prices

PRICES = {
    "as_of": "2026-01-01",
    "currency": "USD",
    "hours_per_month": 730,
    "clouds": {
        "aws": {
            "service": "test",
            "region": "test-1",
            "source": "https://example.com/prices",
            "instances": {
                "small": {"vcpus": 2, "memory_gib": 4, "usd_per_hour": 0.10},
                "large": {"vcpus": 8, "memory_gib": 16, "usd_per_hour": 0.36},
            },
        }
    },
}


@pytest.fixture()
def price_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    return path


def test_the_shipped_price_file_is_dated_and_sourced_for_every_cloud() -> None:
    data = yaml.safe_load(default_prices().read_text())
    assert data["as_of"] and data["currency"] == "USD"
    for cloud in ("aws", "gcp", "azure"):
        prices = load_prices(cloud)
        assert prices.source.startswith("https://") and prices.region
        assert len(prices.instances) >= 4
        assert all(p.usd_per_hour > 0 and p.vcpus >= 2 for p in prices.instances.values())


def test_replicas_and_costs_follow_the_formula(price_file: Path) -> None:
    plan = cost_plan(
        load_prices("aws", price_file),
        target_rps=500,
        capacity_rps=60,
        capacity_vcpus=2,
        headroom=0.3,
        min_instances=2,
    )
    by_name = {o.instance.name: o for o in plan.options}
    small, large = by_name["small"], by_name["large"]
    # small: 60 req/s each, ceil(500 / 42) = 12; large: 240 req/s each, ceil(500 / 168) = 3
    assert (small.instances, large.instances) == (12, 3)
    assert small.usd_per_hour == pytest.approx(1.20) and large.usd_per_hour == pytest.approx(1.08)
    assert large.usd_per_month == pytest.approx(1.08 * 730)
    assert large.usd_per_million == pytest.approx(1.08 / (500 * 3600) * 1e6)
    assert plan.cheapest is large
    assert large.utilisation == pytest.approx(500 / (3 * 240))


def test_the_floor_holds_at_low_load(price_file: Path) -> None:
    plan = cost_plan(load_prices("aws", price_file), target_rps=1, capacity_rps=60, min_instances=2)
    assert all(o.instances == 2 for o in plan.options)
    assert plan.cheapest.instance.name == "small"


def test_one_instance_type_can_be_asked_for(price_file: Path) -> None:
    plan = cost_plan(
        load_prices("aws", price_file), target_rps=100, capacity_rps=60, instance_types=["large"]
    )
    assert [o.instance.name for o in plan.options] == ["large"]
    with pytest.raises(PricingError, match="no price for huge"):
        cost_plan(
            load_prices("aws", price_file), target_rps=100, capacity_rps=60, instance_types=["huge"]
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("as_of"), "'as_of' is required"),
        (lambda d: d["clouds"]["aws"].pop("source"), "source is required"),
        (lambda d: d.update(currency="EUR"), "must be in USD"),
        (
            lambda d: d["clouds"]["aws"]["instances"]["small"].update(usd_per_hour="cheap"),
            "numeric",
        ),
        (lambda d: d["clouds"]["aws"]["instances"]["small"].update(vcpus=0), "positive"),
    ],
)
def test_a_price_file_without_date_source_or_numbers_is_refused(
    tmp_path: Path, change, message: str
) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(PRICES))
    change(data)
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PricingError, match=message):
        load_prices("aws", path)


def test_bad_inputs_are_refused(price_file: Path) -> None:
    prices = load_prices("aws", price_file)
    for kwargs in (
        {"target_rps": 0},
        {"capacity_rps": -1},
        {"headroom": 1.0},
        {"min_instances": 0},
    ):
        arguments = {"target_rps": 10.0, "capacity_rps": 10.0, **kwargs}
        with pytest.raises(PricingError):
            cost_plan(prices, **arguments)  # type: ignore[arg-type]
    with pytest.raises(PricingError, match="no prices for cloud 'gcp'"):
        load_prices("gcp", price_file)


def test_cli_plan_cloud_reads_a_capacity_file_and_writes_json(
    price_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"capacity": {"rps": 60, "users": 16}}))
    out = tmp_path / "plan.json"
    code = main(
        [
            "plan",
            "--cloud",
            "aws",
            "--target-rps",
            "500",
            "--from-loadtest",
            str(summary),
            "--prices",
            str(price_file),
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "cheapest for 500 requests/s: 3 x large" in printed and "as of 2026-01-01" in printed
    plan = json.loads(out.read_text())
    assert plan["cheapest"] == "large" and plan["prices_source"] == "https://example.com/prices"
    assert plan["options"][0]["usd_per_million_requests"] == pytest.approx(0.6, abs=1e-4)


def test_cli_plan_cloud_refuses_an_unknown_instance_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "plan",
            "--cloud",
            "gcp",
            "--target-rps",
            "10",
            "--capacity-rps",
            "5",
            "--instance-type",
            "n9-giant",
        ]
    )
    assert code == 2
    assert "no price for n9-giant" in capsys.readouterr().err
