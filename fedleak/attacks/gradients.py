"""What the server can simulate: a client's gradient or its whole local update.

Both functions differentiate through the client's computation, so an attack can
back-propagate a mismatch to its dummy images (``create_graph=True``). They take the
model's :meth:`~fedleak.models.ImageClassifier.training_simulation`: clients train in
train mode, so BatchNorm normalises with each batch's statistics, and the simulation
does the same without touching any running buffer (which also lets the stacked attacks
``vmap`` it). Parameters are named as in the state dict.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from fedleak.core.updates import ClientUpdate, Weights
from fedleak.models import ImageClassifier

Parameters = dict[str, torch.Tensor]
"""Named parameter tensors, in the model's parameter order."""

_untransformed = threading.local()


@contextmanager
def untransformed() -> Iterator[None]:
    """Within the block, :func:`parameter_gradient` differentiates with plain autograd: for a caller
    that runs no ``torch.func`` transform around it (one problem, differentiated with
    ``torch.autograd.grad``). The same gradient, a lighter graph: torch.func's inner ``grad`` made
    the outer backward ~10% dearer (Inverting Gradients on LeNet, 2 cores; benchmarks/inverting_vs_breaching.py).
    """
    before = getattr(_untransformed, "active", False)
    _untransformed.active = True
    try:
        yield
    finally:
        _untransformed.active = before


def observed_gradient(update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
    """The update's gradient, ordered like ``model.parameters()``."""
    return _in_parameter_order(update.pseudo_gradient(), model)


def observed_delta(update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
    """The update Δ = w_returned − w_sent, ordered like ``model.parameters()``."""
    return _in_parameter_order(update.delta, model)


def _in_parameter_order(weights: Weights, model: ImageClassifier) -> list[torch.Tensor]:
    return [weights[name].detach() for name in model.parameters_by_name()]


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch-mean cross-entropy, as the client computes it.

    ``targets`` are class indices ``(B,)`` or label distributions ``(B, K)`` (the soft
    labels DLG and GRNN optimise).
    """
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def parameter_gradient(
    model: ImageClassifier, parameters: Parameters, images: torch.Tensor, targets: torch.Tensor
) -> Parameters:
    """∇θ of the batch-mean cross-entropy at ``parameters`` (a subset of ``model``'s, by name).

    ``model`` is a :meth:`~fedleak.models.ImageClassifier.training_simulation`. Written
    with ``torch.func`` so it composes with ``grad`` and ``vmap`` (the stacked attacks
    differentiate it per problem), and with plain autograd inside :func:`untransformed`;
    either way the result is differentiable with respect to ``images`` and ``targets``.
    """

    def loss(weights: Parameters) -> torch.Tensor:
        return classification_loss(model.functional_logits(weights, images), targets)

    if not getattr(_untransformed, "active", False):
        gradient: Parameters = torch.func.grad(loss)(parameters)
        return gradient
    weights = {name: w if w.requires_grad else w.detach().requires_grad_() for name, w in parameters.items()}
    gradient_list = torch.autograd.grad(loss(weights), list(weights.values()), create_graph=True,
                                        allow_unused=True, materialize_grads=True)  # unused: zeros, as torch.func's
    return dict(zip(weights, gradient_list))


def batch_gradient(model: ImageClassifier, images: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
    """∇θ at the model's weights, ordered like ``model.parameters()``; differentiable.

    ``model`` is a :meth:`~fedleak.models.ImageClassifier.training_simulation`."""
    return list(parameter_gradient(model, model.parameters_by_name(), images, targets).values())


def simulated_update(
    model: ImageClassifier, parameters: Parameters, images: torch.Tensor, targets: torch.Tensor,
    lr: float, steps: int, batch_size: int,
) -> list[torch.Tensor]:
    """Δ after ``steps`` plain-SGD steps from ``parameters``, in their order; differentiable.

    Inverting Gradients' FedAvg setting (Geiping et al. 2020, §5 "federated
    averaging"): the local training the server configured is unrolled on the dummy
    batch. Each epoch cuts ``images`` into consecutive batches of ``batch_size`` (the
    last may be smaller). The order of dummies is arbitrary, so the first epoch loses
    nothing; later epochs reuse that order where the client drew a fresh permutation
    (the approximation of the reference implementation).
    """
    weights = dict(parameters)
    per_epoch = math.ceil(len(images) / batch_size)
    for step in range(steps):
        batch = slice((step % per_epoch) * batch_size, (step % per_epoch + 1) * batch_size)
        gradient = parameter_gradient(model, weights, images[batch], targets[batch])
        weights = {name: w - lr * gradient[name] for name, w in weights.items()}
    return [weights[name] - start for name, start in parameters.items()]
