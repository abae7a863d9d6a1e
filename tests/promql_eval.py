"""Evaluate an alert rule's PromQL at one instant over samples scraped from the real server.

No Prometheus server can run here; ``promql_parser`` (the parser the chart tests already use)
gives the expression's tree, and this walks it with Prometheus' instant-vector semantics for
the parts the chart's alert rules use: selectors with label matchers, ``sum``/``min``/``max``/
``avg``/``count`` by/without, comparisons (filtering, or ``bool``), arithmetic with scalars and
``and``/``or``/``unless`` with ``on``/``ignoring``. Anything else raises ``NotImplementedError``
rather than being guessed. An alert "fires" when its expression returns any sample (``for:``
is a duration the server would add on top).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import promql_parser as pp

from tritonctl.metrics import Sample

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Point:
    labels: Labels  # sorted, __name__ included while the sample keeps its name
    value: float

    def get(self, name: str) -> str:
        return dict(self.labels).get(name, "")


COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda a, b: a / b if b else (math.copysign(math.inf, a) if a else math.nan),
}


def series(samples: Iterable[Sample], **target: str) -> list[Point]:
    """Scraped samples as Prometheus stores them: with the scrape target's labels added
    (``namespace``, ``pod``, ... as a ServiceMonitor would)."""
    points = []
    for sample in samples:
        labels = {**sample.labels, **target, "__name__": sample.name}
        points.append(Point(tuple(sorted(labels.items())), sample.value))
    return points


def evaluate(expr: str, data: list[Point]) -> list[Point] | float:
    return _eval(pp.parse(expr), data)


def fires(expr: str, data: list[Point]) -> list[Point]:
    result = evaluate(expr, data)
    if isinstance(result, float):
        raise ValueError(f"{expr!r} is a scalar, not an alert expression")
    return result


def _matches(point: Point, matcher: pp.Matcher) -> bool:
    value = point.get(matcher.name)
    op = matcher.op
    if op == pp.MatchOp.Equal:
        return value == matcher.value
    if op == pp.MatchOp.NotEqual:
        return value != matcher.value
    found = re.fullmatch(matcher.value, value) is not None
    return found if op == pp.MatchOp.Re else not found


def _drop_name(labels: Labels) -> Labels:
    return tuple((k, v) for k, v in labels if k != "__name__")


def _signature(point: Point, modifier: pp.LabelModifier | None) -> Labels:
    labels = _drop_name(point.labels)
    if modifier is None:
        return labels
    names = set(modifier.labels)
    if modifier.type == pp.LabelModifierType.Include:  # on (...)
        return tuple((k, v) for k, v in labels if k in names)
    return tuple((k, v) for k, v in labels if k not in names)  # ignoring (...)


def _aggregate(node: pp.AggregateExpr, data: list[Point]) -> list[Point]:
    inner = _eval(node.expr, data)
    if isinstance(inner, float):
        raise ValueError("aggregation over a scalar")
    names = set(node.modifier.labels) if node.modifier is not None else set()
    without = node.modifier is not None and node.modifier.type == pp.AggModifierType.Without
    groups: dict[Labels, list[float]] = {}
    for point in inner:
        labels = _drop_name(point.labels)
        key = tuple((k, v) for k, v in labels if (k not in names) == without)
        groups.setdefault(key, []).append(point.value)
    op = str(node.op)
    reducers: Mapping[str, Callable[[list[float]], float]] = {
        "sum": lambda v: float(sum(v)),
        "count": lambda v: float(len(v)),
        "avg": lambda v: float(sum(v) / len(v)),
        # Prometheus' max/min skip NaN unless every value is NaN
        "max": lambda v: max((x for x in v if not math.isnan(x)), default=math.nan),
        "min": lambda v: min((x for x in v if not math.isnan(x)), default=math.nan),
    }
    if op not in reducers:
        raise NotImplementedError(f"aggregation {op}")
    return [Point(key, reducers[op](values)) for key, values in groups.items()]


def _binary(node: pp.BinaryExpr, data: list[Point]) -> list[Point] | float:
    op = str(node.op)
    lhs, rhs = _eval(node.lhs, data), _eval(node.rhs, data)
    modifier = node.modifier
    return_bool = modifier is not None and modifier.return_bool
    matching = modifier.matching if modifier is not None else None
    if op in ("and", "or", "unless"):
        if isinstance(lhs, float) or isinstance(rhs, float):
            raise ValueError(f"{op} needs vectors on both sides")
        right = {_signature(p, matching) for p in rhs}
        if op == "and":
            return [p for p in lhs if _signature(p, matching) in right]
        if op == "unless":
            return [p for p in lhs if _signature(p, matching) not in right]
        left = {_signature(p, matching) for p in lhs}
        return lhs + [p for p in rhs if _signature(p, matching) not in left]
    if op in COMPARISONS:
        compare = COMPARISONS[op]
        if isinstance(lhs, float) and isinstance(rhs, float):
            return float(compare(lhs, rhs))
        if isinstance(lhs, float) or isinstance(rhs, float):
            vector = rhs if isinstance(lhs, float) else lhs
            scalar = lhs if isinstance(lhs, float) else rhs
            out = []
            for point in vector:  # type: ignore[union-attr]
                a, b = (scalar, point.value) if isinstance(lhs, float) else (point.value, scalar)
                if return_bool:
                    out.append(Point(_drop_name(point.labels), float(compare(a, b))))
                elif compare(a, b):
                    out.append(point)
            return out
        raise NotImplementedError("comparison between two vectors")
    if op in ARITHMETIC:
        apply = ARITHMETIC[op]
        if isinstance(lhs, float) and isinstance(rhs, float):
            return apply(lhs, rhs)
        if isinstance(rhs, float):
            return [Point(_drop_name(p.labels), apply(p.value, rhs)) for p in lhs]  # type: ignore[union-attr]
        if isinstance(lhs, float):
            return [Point(_drop_name(p.labels), apply(lhs, p.value)) for p in rhs]
        raise NotImplementedError("arithmetic between two vectors")
    raise NotImplementedError(f"operator {op}")


def _eval(node: object, data: list[Point]) -> list[Point] | float:
    if isinstance(node, pp.NumberLiteral):
        return float(node.val)
    if isinstance(node, pp.ParenExpr):
        return _eval(node.expr, data)
    if isinstance(node, pp.VectorSelector):
        if node.offset is not None or node.at is not None:
            raise NotImplementedError("offset/@ modifiers")
        chosen = [p for p in data if node.name is None or p.get("__name__") == node.name]
        return [p for p in chosen if all(_matches(p, m) for m in node.matchers.matchers)]
    if isinstance(node, pp.AggregateExpr):
        return _aggregate(node, data)
    if isinstance(node, pp.BinaryExpr):
        return _binary(node, data)
    raise NotImplementedError(type(node).__name__)
