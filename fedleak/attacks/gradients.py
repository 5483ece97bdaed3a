"""Gradient helpers shared by the gradient-inversion attacks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedleak.models import ImageClassifier
from fedleak.updates import ClientUpdate


def observed_gradient(update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
    """The update's gradient, ordered like ``model.parameters()``."""
    gradient = update.pseudo_gradient()
    return [gradient[name].detach() for name, _ in model.named_parameters()]


def batch_gradient(
    model: ImageClassifier, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = False
) -> list[torch.Tensor]:
    """∇θ of the batch-mean cross-entropy, as the client computed it.

    ``targets`` are class indices ``(B,)`` or label distributions ``(B, K)`` (DLG's
    soft labels, which it optimises).
    """
    logits = model(images)
    if targets.ndim == 1:
        loss = F.cross_entropy(logits, targets)
    else:
        loss = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return list(torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph))


def squared_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """DLG's objective: Σ over parameters of ‖∇θ' − ∇θ‖²."""
    return sum(((x - y) ** 2).sum() for x, y in zip(a, b))  # type: ignore[return-value]
