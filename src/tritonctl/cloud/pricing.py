"""Cost of serving a target load on a managed cloud, from measured capacity and a price file.

The capacity is what one replica served within the SLO on the machine it was measured on
(``tritonctl loadtest --find-capacity``), which had ``capacity_vcpus`` vCPUs. On a CPU instance
type with ``v`` vCPUs the model is assumed to serve ``capacity x v / capacity_vcpus``: Triton
runs more model instances on more cores, and the pipelines here are CPU-bound. That assumption
is the plan's weakest link; a load test on the chosen instance type replaces it with a figure.

For each instance type: instances = max(floor, ceil(target / (per-instance capacity x
(1 - headroom)))); $/hour = instances x price; $/month = $/hour x hours per month; $ per
million requests = $/hour / (target x 3600) x 10^6, at the target load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

CLOUD_NAMES = {"aws": "AWS SageMaker", "gcp": "Google Vertex AI", "azure": "Azure ML"}


class PricingError(ValueError):
    """The price file or an input to the cost plan is unusable; the message says which."""


@dataclass(frozen=True)
class InstancePrice:
    name: str
    vcpus: float
    memory_gib: float
    usd_per_hour: float


@dataclass(frozen=True)
class PriceList:
    cloud: str
    service: str
    region: str
    source: str
    as_of: str
    hours_per_month: float
    instances: dict[str, InstancePrice]
    path: str


def default_prices() -> Path:
    return Path(str(resources.files("tritonctl.cloud") / "prices.yaml"))


def load_prices(cloud: str, path: str | Path | None = None) -> PriceList:
    """The ``cloud`` section of the price file (``path``, else the shipped ``prices.yaml``)."""
    path = Path(path) if path else default_prices()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise PricingError(f"price file not found: {path}") from error
    except yaml.YAMLError as error:
        raise PricingError(f"{path}: not YAML ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("clouds"), dict):
        raise PricingError(f"{path}: expected a mapping with 'clouds' (see {default_prices()})")
    for key in ("as_of", "currency"):
        if not data.get(key):
            raise PricingError(f"{path}: '{key}' is required: a price without a date misleads")
    if str(data["currency"]).upper() != "USD":
        raise PricingError(f"{path}: prices must be in USD, not {data['currency']}")
    section = data["clouds"].get(cloud)
    if not isinstance(section, dict):
        raise PricingError(
            f"{path}: no prices for cloud '{cloud}' (it has: {', '.join(data['clouds'])})"
        )
    if not section.get("source"):
        raise PricingError(
            f"{path}: clouds.{cloud}.source is required (where the prices come from)"
        )
    instances = {}
    for name, entry in (section.get("instances") or {}).items():
        try:
            price = InstancePrice(
                name=str(name),
                vcpus=float(entry["vcpus"]),
                memory_gib=float(entry.get("memory_gib", 0)),
                usd_per_hour=float(entry["usd_per_hour"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PricingError(
                f"{path}: clouds.{cloud}.instances.{name} needs numeric vcpus and usd_per_hour "
                f"({error})"
            ) from error
        if price.vcpus <= 0 or price.usd_per_hour <= 0:
            raise PricingError(f"{path}: clouds.{cloud}.instances.{name}: values must be positive")
        instances[price.name] = price
    if not instances:
        raise PricingError(f"{path}: clouds.{cloud} lists no instances")
    return PriceList(
        cloud=cloud,
        service=str(section.get("service", CLOUD_NAMES.get(cloud, cloud))),
        region=str(section.get("region", "")),
        source=str(section["source"]),
        as_of=str(data["as_of"]),
        hours_per_month=float(data.get("hours_per_month", 730)),
        instances=instances,
        path=str(path),
    )


@dataclass(frozen=True)
class Option:
    """One instance type priced for the target load."""

    instance: InstancePrice
    per_instance_rps: float
    instances: int
    usd_per_hour: float
    usd_per_month: float
    usd_per_million: float
    utilisation: float  # target / (instances x per-instance capacity)


@dataclass
class CostPlan:
    prices: PriceList
    target_rps: float
    capacity_rps: float
    capacity_vcpus: float
    headroom: float
    min_instances: int
    options: list[Option]

    @property
    def cheapest(self) -> Option:
        return self.options[0]

    def lines(self) -> list[str]:
        p = self.prices
        return [
            f"{CLOUD_NAMES.get(p.cloud, p.cloud)}: {p.service}, {p.region}; prices as of {p.as_of} "
            f"from {p.source} ({p.path})",
            f"capacity: {self.capacity_rps:g} requests/s within the SLO on {self.capacity_vcpus:g} "
            f"vCPUs; assumed to scale with vCPUs on each instance type",
            f"instances = max({self.min_instances}, ceil({self.target_rps:g} / (per-instance "
            f"capacity x (1 - {self.headroom:g}))))",
            f"cheapest for {self.target_rps:g} requests/s: {self.cheapest.instances} x "
            f"{self.cheapest.instance.name} at ${self.cheapest.usd_per_hour:.3f}/hour",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cloud": self.prices.cloud,
            "service": self.prices.service,
            "region": self.prices.region,
            "prices_as_of": self.prices.as_of,
            "prices_source": self.prices.source,
            "target_rps": self.target_rps,
            "capacity_rps": self.capacity_rps,
            "capacity_vcpus": self.capacity_vcpus,
            "headroom": self.headroom,
            "min_instances": self.min_instances,
            "cheapest": self.cheapest.instance.name,
            "options": [
                {
                    "instance_type": o.instance.name,
                    "vcpus": o.instance.vcpus,
                    "usd_per_instance_hour": o.instance.usd_per_hour,
                    "per_instance_rps": round(o.per_instance_rps, 3),
                    "instances": o.instances,
                    "usd_per_hour": round(o.usd_per_hour, 4),
                    "usd_per_month": round(o.usd_per_month, 2),
                    "usd_per_million_requests": round(o.usd_per_million, 4),
                    "utilisation": round(o.utilisation, 3),
                }
                for o in self.options
            ],
        }


def cost_plan(
    prices: PriceList,
    *,
    target_rps: float,
    capacity_rps: float,
    capacity_vcpus: float = 2,
    headroom: float = 0.3,
    min_instances: int = 1,
    instance_types: list[str] | None = None,
) -> CostPlan:
    """Every (or each named) instance type priced for ``target_rps``, cheapest first."""
    if target_rps <= 0:
        raise PricingError(f"target load must be positive, got {target_rps} requests/s")
    if capacity_rps <= 0:
        raise PricingError(f"capacity must be positive, got {capacity_rps} requests/s")
    if capacity_vcpus <= 0:
        raise PricingError(f"capacity vCPUs must be positive, got {capacity_vcpus}")
    if not 0 <= headroom < 1:
        raise PricingError(f"headroom must be in [0, 1), got {headroom}")
    if min_instances < 1:
        raise PricingError(f"the instance floor must be at least 1, got {min_instances}")
    names = instance_types or list(prices.instances)
    unknown = [n for n in names if n not in prices.instances]
    if unknown:
        raise PricingError(
            f"no price for {', '.join(unknown)} in {prices.path} (clouds.{prices.cloud}); it "
            f"lists {', '.join(prices.instances)}. Add it to a copy and pass --prices"
        )
    options = []
    for name in names:
        instance = prices.instances[name]
        per_instance = capacity_rps * instance.vcpus / capacity_vcpus
        # Round before ceil so 300 / (100 x 0.75) stays 4, not 5 from float noise.
        needed = math.ceil(round(target_rps / (per_instance * (1 - headroom)), 9))
        count = max(min_instances, needed)
        per_hour = count * instance.usd_per_hour
        options.append(
            Option(
                instance=instance,
                per_instance_rps=per_instance,
                instances=count,
                usd_per_hour=per_hour,
                usd_per_month=per_hour * prices.hours_per_month,
                usd_per_million=per_hour / (target_rps * 3600) * 1e6,
                utilisation=target_rps / (count * per_instance),
            )
        )
    options.sort(key=lambda o: (o.usd_per_hour, o.instances, o.instance.name))
    return CostPlan(
        prices=prices,
        target_rps=target_rps,
        capacity_rps=capacity_rps,
        capacity_vcpus=capacity_vcpus,
        headroom=headroom,
        min_instances=min_instances,
        options=options,
    )
