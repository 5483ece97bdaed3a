"""What an honest client could notice in crafted weights: a few plain statistics per layer.

A client receives weights and nothing else; what it can check without any knowledge of the
server is how far they are from the model it was sent before (the previous global model)
and whether each layer still looks like the architecture's own initialisation. For every
crafted set of weights the adversary stores, per floating-point tensor:

* ``norm``, ``std`` and ``max_abs`` of the weights sent;
* ``relative_change`` = ‖w_sent − w_previous‖₂ / ‖w_previous‖₂ (``None`` where the previous
  tensor is all zeros: a relative change is undefined);
* ``std_over_init`` = std(w_sent) / std(w_init), against a fresh initialisation of the same
  architecture (``None`` where the initialisation is constant, e.g. a zero bias).

These are the ground a client-side detector stands on; an honest round's weights give
``relative_change`` of one round's training and ``std_over_init`` near 1.
"""

from __future__ import annotations

import torch

from fedleak.core.updates import Weights
from fedleak.results.rows import LayerVisibility


def layer_visibility(sent: Weights, previous: Weights, initial: Weights) -> list[LayerVisibility]:
    """Per floating-point tensor of ``sent``, in its order: its statistics against ``previous``
    (what the client was sent before) and ``initial`` (a fresh initialisation of the architecture)."""
    return [_layer(name, sent[name].detach().double(), previous[name].detach().double(),
                   initial[name].detach().double())
            for name in sent if sent[name].is_floating_point()]


def _layer(name: str, sent: torch.Tensor, previous: torch.Tensor, initial: torch.Tensor) -> LayerVisibility:
    previous_norm, std, init_std = float(previous.norm()), _std(sent), _std(initial)
    return LayerVisibility(
        layer=name, norm=float(sent.norm()), std=std, max_abs=float(sent.abs().max()),
        relative_change=float((sent - previous).norm()) / previous_norm if previous_norm > 0 else None,
        std_over_init=std / init_std if init_std > 0 else None,
    )


def _std(tensor: torch.Tensor) -> float:
    """The population standard deviation (0 for a single value, where torch's unbiased one is NaN)."""
    return float(tensor.std(unbiased=False))
