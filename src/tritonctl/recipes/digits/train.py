"""The digits CNNs and how they are trained: plain, distilled, magnitude-pruned, channel-pruned.

Every model is a ``DigitsCNN`` of a given width, so the structured-pruned model is simply a
narrower network (fewer channels, fewer multiply-accumulates), not a wide one full of zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn
from torch.nn.utils import prune

from tritonctl.recipes.digits.data import Split

BATCH = 64
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Width:
    """Channels of the two conv layers and units of the hidden linear layer."""

    conv1: int
    conv2: int
    hidden: int


TEACHER = Width(32, 64, 128)
STUDENT = Width(8, 16, 32)


class DigitsCNN(nn.Module):
    """conv3×3 → ReLU → conv3×3 → ReLU → maxpool 2 → linear → ReLU → linear.

    Takes ``INPUT`` float ``[N, 1, 8, 8]`` on the data set's 0–16 scale (it divides by 16
    itself, so serving sends the same numbers the data set holds) and returns 10 logits.
    """

    def __init__(self, width: Width) -> None:
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(1, width.conv1, 3, padding=1)
        self.conv2 = nn.Conv2d(width.conv1, width.conv2, 3, padding=1)
        self.fc1 = nn.Linear(width.conv2 * 16, width.hidden)
        self.fc2 = nn.Linear(width.hidden, 10)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x / 16.0))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


def macs(width: Width) -> int:
    """Multiply-accumulates of one forward pass (8×8 input): what channel pruning lowers."""
    conv1 = 64 * width.conv1 * 9
    conv2 = 64 * width.conv2 * width.conv1 * 9
    return conv1 + conv2 + width.conv2 * 16 * width.hidden + width.hidden * 10


def parameters(model: nn.Module, *, nonzero: bool = False) -> int:
    if nonzero:
        return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))
    return int(sum(p.numel() for p in model.parameters()))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    # One thread: these tensors are tiny, and on shared cores two OpenMP threads spin-wait on
    # each other (measured 5 teacher epochs: 1.8 s on one thread, 14-17 s on two under load).
    torch.set_num_threads(1)
    # Tiny weights late in training turn denormal, which is many times slower on CPUs.
    torch.set_flush_denormal(True)


def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def accuracy(model: nn.Module, split: Split) -> float:
    return float((logits(model, split.x).argmax(1) == split.y).mean())


def train(
    model: M,
    data: Split,
    *,
    epochs: int,
    lr: float,
    seed: int,
    progress: Progress,
    label: str,
    teacher: nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> M:
    """Adam with a cosine schedule. With ``teacher``, the loss is knowledge distillation:
    ``alpha · T² · KL(student/T ‖ teacher/T) + (1 − alpha) · cross-entropy(labels)``."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    soft = torch.from_numpy(logits(teacher, data.x)) if teacher is not None else None
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(y) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    task = progress.add_task(label, total=epochs)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(y), generator=generator).split(BATCH):
            out = model(x[batch])
            loss = F.cross_entropy(out, y[batch])
            if soft is not None:
                kd = F.kl_div(
                    F.log_softmax(out / temperature, dim=1),
                    F.softmax(soft[batch] / temperature, dim=1),
                    reduction="batchmean",
                )
                loss = alpha * temperature**2 * kd + (1 - alpha) * loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        progress.advance(task)
    model.eval()
    return model


def prunable(model: DigitsCNN) -> list[tuple[nn.Module, str]]:
    return [
        (model.conv1, "weight"),
        (model.conv2, "weight"),
        (model.fc1, "weight"),
        (model.fc2, "weight"),
    ]


def weight_sparsity(model: DigitsCNN) -> float:
    """Fraction of zero weights over the prunable weight tensors (biases excluded)."""
    tensors = [getattr(module, name) for module, name in prunable(model)]
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return zeros / sum(t.numel() for t in tensors)


def magnitude_prune(model: DigitsCNN, amount: float) -> DigitsCNN:
    """Global L1 (magnitude) pruning of all weights; masks stay attached for fine-tuning."""
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)
    return model


def make_permanent(model: DigitsCNN) -> DigitsCNN:
    """Fold the pruning masks into the weights (``prune.remove``), leaving plain tensors."""
    for module, name in prunable(model):
        prune.remove(module, name)
    return model


def channel_prune(model: DigitsCNN, keep: float) -> DigitsCNN:
    """A narrower copy of ``model`` keeping the conv filters with the largest L1 norms.

    conv1's kept filters select conv2's input channels; conv2's kept filters select the
    matching 4×4 blocks of fc1's inputs. The result has fewer channels, so fewer MACs.
    """
    width = model.width
    c1 = _top_filters(model.conv1.weight, round(width.conv1 * keep))
    w2 = model.conv2.weight[:, c1]
    c2 = _top_filters(w2, round(width.conv2 * keep))
    small = DigitsCNN(Width(len(c1), len(c2), width.hidden))
    features = (c2[:, None] * 16 + torch.arange(16)[None, :]).flatten()
    state = model.state_dict()
    small.load_state_dict(
        {
            "conv1.weight": state["conv1.weight"][c1],
            "conv1.bias": state["conv1.bias"][c1],
            "conv2.weight": state["conv2.weight"][c2][:, c1],
            "conv2.bias": state["conv2.bias"][c2],
            "fc1.weight": state["fc1.weight"][:, features],
            "fc1.bias": state["fc1.bias"],
            "fc2.weight": state["fc2.weight"],
            "fc2.bias": state["fc2.bias"],
        }
    )
    return small


def _top_filters(weight: torch.Tensor, count: int) -> torch.Tensor:
    norms = weight.detach().abs().flatten(1).sum(1)
    return torch.sort(torch.topk(norms, count).indices).values
