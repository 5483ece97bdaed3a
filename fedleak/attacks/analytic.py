"""Closed-form input recovery from a fully-connected layer (Phong et al., 2017/2018).

For a first layer y = W x + b, each row i has ∂L/∂W_i = ∂L/∂y_i · xᵀ and
∂L/∂b_i = ∂L/∂y_i, so x = (∂L/∂W_i) / (∂L/∂b_i) for any row with ∂L/∂b_i ≠ 0.
For a batch, row i gives Σₙ δₙᵢ xₙ / Σₙ δₙᵢ: one sample exactly when only that
sample reaches unit i (e.g. the others' ReLU is off). Rows that isolate the same
sample give the same vector, so we group near-identical candidates and report the
groups that at least two rows agree on (for a batch of one, every row agrees).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from fedleak.attacks.base import ATTACKS, Attack, AttackConfig, AttackNotApplicable, Budget, Reconstruction
from fedleak.core.updates import ClientUpdate
from fedleak.models import ImageClassifier
from fedleak.models.base import first_weighted_layer


class AnalyticConfig(AttackConfig):
    min_bias_gradient: float = Field(1e-6, ge=0)
    """Ignore rows whose |∂L/∂b_i| is below this fraction of the largest (too noisy)."""
    agreement: float = Field(1e-3, gt=0)
    """Two rows agree when their candidates differ by less than this (relative L2)."""


@ATTACKS.register("analytic")
class Analytic(Attack):
    Config = AnalyticConfig
    config: AnalyticConfig

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        deadline = budget.deadline()
        try:
            name, layer = first_weighted_layer(model)
        except ValueError as error:  # no Linear or Conv2d layer at all
            raise AttackNotApplicable(f"analytic: {error}") from None
        if not isinstance(layer, nn.Linear) or layer.bias is None:
            raise AttackNotApplicable(
                f"analytic needs a first fully-connected layer with bias; this model starts with "
                f"{type(layer).__name__}{'' if layer.bias is not None else ' without bias'}"
            )
        if layer.in_features != math.prod(model.image_shape):
            raise AttackNotApplicable(f"analytic needs a first layer that reads the flattened image "
                                      f"({math.prod(model.image_shape)} inputs); {name} has {layer.in_features}")
        gradient = update.pseudo_gradient()
        weight_grad, bias_grad = gradient[f"{name}.weight"].double(), gradient[f"{name}.bias"].double()
        rows = bias_grad.abs() > self.config.min_bias_gradient * bias_grad.abs().max()
        candidates = weight_grad[rows] / bias_grad[rows, None]
        groups = self._agreeing_groups(candidates, bias_grad[rows].abs())
        inputs = torch.stack([candidates[g].mean(dim=0) for g in groups[: update.metadata.num_examples]])
        images = model.denormalize(inputs.float().view(-1, *model.image_shape)).clamp(0, 1)
        return Reconstruction(
            images=images.detach(), labels=None, seconds=deadline.elapsed,
            extras={"rows_used": int(rows.sum()), "groups": [len(g) for g in groups]},
        )

    def _agreeing_groups(self, candidates: torch.Tensor, strength: torch.Tensor) -> list[list[int]]:
        """Greedy grouping, strongest rows first; groups of ≥ 2 rows, largest first."""
        groups: list[list[int]] = []
        for row in strength.argsort(descending=True).tolist():
            for group in groups:
                anchor = candidates[group[0]]
                if (candidates[row] - anchor).norm() <= self.config.agreement * anchor.norm():
                    group.append(row)
                    break
            else:
                groups.append([row])
        agreeing = sorted((g for g in groups if len(g) >= 2), key=len, reverse=True)
        return agreeing or groups[:1]
