"""What the server can simulate: a client's gradient or its whole local update.

Both functions differentiate through the client's computation, so an attack can
back-propagate a mismatch to its dummy images (``create_graph=True``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fedleak.models import ImageClassifier
from fedleak.updates import ClientUpdate, Weights


def observed_gradient(update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
    """The update's gradient, ordered like ``model.parameters()``."""
    return _in_parameter_order(update.pseudo_gradient(), model)


def observed_delta(update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
    """The update Δ = w_returned − w_sent, ordered like ``model.parameters()``."""
    return _in_parameter_order(update.delta, model)


def _in_parameter_order(weights: Weights, model: ImageClassifier) -> list[torch.Tensor]:
    return [weights[name].detach() for name, _ in model.named_parameters()]


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch-mean cross-entropy, as the client computes it.

    ``targets`` are class indices ``(B,)`` or label distributions ``(B, K)`` (the soft
    labels DLG and GRNN optimise).
    """
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def batch_gradient(
    model: ImageClassifier, images: torch.Tensor, targets: torch.Tensor, create_graph: bool = False
) -> list[torch.Tensor]:
    """∇θ of the batch-mean cross-entropy at the model's weights."""
    loss = classification_loss(model(images), targets)
    return list(torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph))


def simulated_update(
    model: ImageClassifier, images: torch.Tensor, targets: torch.Tensor, lr: float, steps: int, batch_size: int,
) -> list[torch.Tensor]:
    """Δ after ``steps`` plain-SGD steps from the model's weights, kept differentiable.

    Inverting Gradients' FedAvg setting (Geiping et al. 2020, §5 "federated
    averaging"): the local training the server configured is unrolled on the dummy
    batch. Each epoch cuts ``images`` into consecutive batches of ``batch_size`` (the
    last may be smaller). The order of dummies is arbitrary, so the first epoch loses
    nothing; later epochs reuse that order where the client drew a fresh permutation
    (the approximation of the reference implementation).
    """
    names = [name for name, _ in model.named_parameters()]
    start = [parameter for _, parameter in model.named_parameters()]
    weights = list(start)
    per_epoch = math.ceil(len(images) / batch_size)
    for step in range(steps):
        batch = slice((step % per_epoch) * batch_size, (step % per_epoch + 1) * batch_size)
        logits = functional_call(model, dict(zip(names, weights)), (images[batch],))
        loss = classification_loss(logits, targets[batch])
        gradient = torch.autograd.grad(loss, weights, create_graph=True)
        weights = [w - lr * g for w, g in zip(weights, gradient)]
    return [w - s for w, s in zip(weights, start)]
