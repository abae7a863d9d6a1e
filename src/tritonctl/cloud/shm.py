"""The Python backend's shared memory under a fixed ``/dev/shm``.

Every Python-backend model instance runs a stub process that talks to the server through its
own region in ``/dev/shm``: created at ``shm-default-byte-size`` when the model loads, grown by
``shm-growth-byte-size`` steps when a batch's tensors do not fit, never shrunk. SageMaker gives a
container Docker's default 64 MiB ``/dev/shm`` and no way to change it, while its ``serve``
script starts every region at 16 MiB: four Python instances fill it before a request arrives.

``plan`` sizes the regions from the configs: each instance starts small and has room for the
largest single request it can be sent (``max_batch_size`` rows of its fixed-size tensors, with
sequence dims bounded by the ``max_length`` parameter, and string tensors bounded by the cloud's
payload limit, since one request body cannot carry more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from tritonctl.cloud.facts import MIB
from tritonctl.repository import ModelEntry

#: What the stock SageMaker ``serve`` script passes when the environment does not say.
STOCK_DEFAULT_BYTES = 16 * MIB
STOCK_GROWTH_BYTES = 1 * MIB
#: What tritonctl passes: the Python backend's own default since Triton 23.09 (server#6209).
DEFAULT_BYTES = 1 * MIB
GROWTH_BYTES = 1 * MIB

#: Bytes counted per element of a string output (class labels, not documents).
STRING_OUTPUT_ITEM = 1024

_DTYPE_BYTES = {
    mc.TYPE_BOOL: 1,
    mc.TYPE_UINT8: 1,
    mc.TYPE_INT8: 1,
    mc.TYPE_UINT16: 2,
    mc.TYPE_INT16: 2,
    mc.TYPE_FP16: 2,
    mc.TYPE_BF16: 2,
    mc.TYPE_UINT32: 4,
    mc.TYPE_INT32: 4,
    mc.TYPE_FP32: 4,
    mc.TYPE_UINT64: 8,
    mc.TYPE_INT64: 8,
    mc.TYPE_FP64: 8,
}


class ShmError(ValueError):
    """The models cannot fit the cloud's /dev/shm, or a tensor has no size bound."""


@dataclass(frozen=True)
class InstanceNeed:
    """One Python-stub model: how many instances, and one execution's largest tensors."""

    model: str
    instances: int
    peak_bytes: int
    local_only: bool = False  # the ONNX Runtime stand-in: a stub here, native in the container

    def region_bytes(self, default: int, growth: int) -> int:
        """A region's size after its largest execution: the start plus whole growth steps."""
        if self.peak_bytes <= default:
            return default
        return default + growth * (math.ceil((self.peak_bytes - default) / growth) + 1)


@dataclass(frozen=True)
class ShmPlan:
    limit_bytes: int
    default_bytes: int
    growth_bytes: int
    needs: tuple[InstanceNeed, ...]

    def _sum(self, default: int, growth: int, *, at_load: bool, local: bool) -> int:
        total = 0
        for need in self.needs:
            if need.local_only and not local:
                continue
            each = default if at_load else need.region_bytes(default, growth)
            total += need.instances * each
        return total

    @property
    def load_bytes(self) -> int:
        """``/dev/shm`` the container's Python stubs take when the models load."""
        return self._sum(self.default_bytes, self.growth_bytes, at_load=True, local=False)

    @property
    def peak_bytes(self) -> int:
        """... after every instance has run its largest single request."""
        return self._sum(self.default_bytes, self.growth_bytes, at_load=False, local=False)

    @property
    def stock_load_bytes(self) -> int:
        """What the stock ``serve`` defaults (16 MiB regions) would take at load."""
        return self._sum(STOCK_DEFAULT_BYTES, STOCK_GROWTH_BYTES, at_load=True, local=False)

    @property
    def local_extra_bytes(self) -> int:
        """What the local ONNX Runtime stand-in stubs add at their peak (none in the cloud)."""
        local = self._sum(self.default_bytes, self.growth_bytes, at_load=False, local=True)
        return local - self.peak_bytes

    @property
    def python_instances(self) -> int:
        return sum(n.instances for n in self.needs if not n.local_only)

    def backend_config(self) -> list[str]:
        """The ``--backend-config`` flags that apply this plan to ``tritonserver``."""
        return [
            f"--backend-config=python,shm-default-byte-size={self.default_bytes}",
            f"--backend-config=python,shm-growth-byte-size={self.growth_bytes}",
        ]

    def lines(self) -> list[str]:
        mib = MIB
        out = [
            f"/dev/shm {self.limit_bytes / mib:.0f} MiB; {self.python_instances} Python-backend "
            f"instance(s) in the container",
            f"stock serve defaults (16 MiB each): {self.stock_load_bytes / mib:.1f} MiB at load",
            f"planned ({self.default_bytes / mib:g} MiB start, {self.growth_bytes / mib:g} MiB "
            f"growth): {self.load_bytes / mib:.1f} MiB at load, {self.peak_bytes / mib:.1f} MiB "
            "after each instance's largest request",
        ]
        for need in self.needs:
            where = " (local ONNX Runtime stand-in only)" if need.local_only else ""
            out.append(
                f"  {need.model}: {need.instances} x {need.peak_bytes / mib:.2f} MiB peak "
                f"tensors{where}"
            )
        return out


def _sequence_bound(entries: Sequence[ModelEntry]) -> int | None:
    bounds = [
        int(entry.config.parameters[key].string_value)
        for entry in entries
        for key in ("max_length",)
        if key in entry.config.parameters
        and entry.config.parameters[key].string_value.strip().isdigit()
    ]
    return max(bounds) if bounds else None


def _tensor_bytes(
    model: str,
    tensor: mc.ModelInput | mc.ModelOutput,
    *,
    sequence: int | None,
    string_item: int,
) -> int:
    """Bytes of one row of ``tensor`` (no batch dim)."""
    elements = 1
    for dim in tensor.dims:
        if dim == -1:
            if sequence is None:
                raise ShmError(
                    f"{model}: tensor '{tensor.name}' has a variable dim and no model of the "
                    "package sets a max_length parameter to bound it"
                )
            dim = sequence
        elements *= dim
    if tensor.data_type == mc.TYPE_STRING:
        return elements * string_item
    return elements * _DTYPE_BYTES.get(tensor.data_type, 8)


#: Backends whose CPU instance groups default to 2 instances, not 1 (Triton core's
#: ``SetDefaultInstanceCount``; seen with 2.51: a group-less ONNX model runs 2 stubs here).
TWO_CPU_INSTANCES = ("onnxruntime", "tensorflow")


def instance_count(entry: ModelEntry) -> int:
    """Instances Triton creates on a CPU-only container: the groups' counts; an unset count (or
    no group at all) is 1, or 2 for the ONNX Runtime and TensorFlow backends."""
    unset = 2 if entry.kind in TWO_CPU_INSTANCES else 1
    groups = entry.config.instance_group
    if not groups:
        return unset
    return sum(group.count if group.count > 0 else unset for group in groups)


def peak_bytes(entry: ModelEntry, *, sequence: int | None, payload_limit: int) -> int:
    """One execution's largest inputs and outputs for ``entry``.

    Fixed-size tensors count ``max_batch_size`` rows; a string input counts one request body at
    the cloud's payload limit, a string output ``STRING_OUTPUT_ITEM`` bytes per element (a batch of concurrent large requests can exceed this: that batch
    then fails with Triton's "Failed to increase the shared memory pool size" error, and the
    model keeps serving).
    """
    config = entry.config
    rows = max(config.max_batch_size, 1)
    fixed = 0
    strings = 0
    for tensor in config.input:
        if tensor.data_type == mc.TYPE_STRING:
            strings += payload_limit
        else:
            fixed += rows * _tensor_bytes(entry.name, tensor, sequence=sequence, string_item=0)
    for tensor in config.output:
        fixed += rows * _tensor_bytes(
            entry.name, tensor, sequence=sequence, string_item=STRING_OUTPUT_ITEM
        )
    return fixed + strings


def plan(
    entries: Sequence[ModelEntry],
    *,
    limit_bytes: int,
    payload_limit: int,
    default_bytes: int = DEFAULT_BYTES,
    growth_bytes: int = GROWTH_BYTES,
) -> ShmPlan:
    """The shared-memory plan for ``entries`` under ``limit_bytes`` of ``/dev/shm``.

    Raises ``ShmError`` when the container's stubs would not fit after their largest requests.
    """
    sequence = _sequence_bound(entries)
    needs: list[InstanceNeed] = []
    for entry in entries:
        if entry.kind not in ("python", "onnxruntime"):
            continue
        needs.append(
            InstanceNeed(
                model=entry.name,
                instances=instance_count(entry),
                peak_bytes=peak_bytes(entry, sequence=sequence, payload_limit=payload_limit),
                local_only=entry.kind == "onnxruntime",
            )
        )
    result = ShmPlan(limit_bytes, default_bytes, growth_bytes, tuple(needs))
    if result.peak_bytes > limit_bytes:
        raise ShmError(
            "the Python-backend instances need "
            f"{result.peak_bytes / MIB:.1f} MiB of /dev/shm after their largest requests, over "
            f"the {limit_bytes / MIB:.0f} MiB the cloud gives:\n  "
            + "\n  ".join(result.lines())
            + "\nlower max_batch_size or the instance counts of the Python models"
        )
    return result
