"""The random-parameter query: fresh random weights, crafted for the tensor attack.

Wang, Lee & Lei (AISTATS 2023) read one gradient of a two-layer network at *random*
parameters as samples of g(w) = Σᵢ ρᵢσ(wᵀxᵢ) and ∇g at the hidden weights; the attack
(:mod:`fedleak.attacks.tensor`) needs those weights to be standard Gaussian and the output
layer to be rank one. :class:`RandomQuery` crafts such a model for any registered
architecture; only a one-hidden-layer (leaky) ReLU MLP is then attackable by ``tensor``.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from fedleak.core.updates import Weights
from fedleak.crafting.base import CRAFTINGS, Crafting, CraftingConfig, CraftRequest
from fedleak.models import ModelSpec
from fedleak.models.base import first_weighted_layer, linear_layers


class RandomQueryConfig(CraftingConfig):
    bias_scale: float = Field(1.0, ge=0)
    """First-layer bias std (weights are N(0, 1/fan_in), so wᵀx has std ≈ 1 for a normalised input; 0: zero bias)."""
    output_scale: float = Field(0.1, gt=0)
    """Output weights are output_scale/√width · v aᵀ (rank one): logits of order output_scale."""


@CRAFTINGS.register("random-query")
class RandomQuery(Crafting):
    """Freshly random weights, the same for every client of the round (weights only)."""

    Config = RandomQueryConfig
    config: RandomQueryConfig

    def craft(self, model: ModelSpec, global_weights: Weights, request: CraftRequest) -> Weights:
        """A full ``state_dict`` for ``model``, freshly random and crafted for the tensor attack.

        * Every layer starts from the architecture's own initialisation drawn with the request's seed
          (fresh, so the query reveals nothing about the global model and valid for any model).
        * First weighted layer: weights ~ N(0, 1/fan_in): isotropic Gaussian, what Stein's lemma
          behind the Hermite moments assumes; the attack divides the empirical scale out, so the
          scale is free, and 1/fan_in (rather than 1) keeps pre-activations O(1) for normalised
          inputs and the float32 rounding of Δ = w_returned − w_sent small *relative to* Δ
          (digits, width 2000, B = 16, lr 0.1: 0.02% of ‖Δ‖, against 0.17% with N(0, 1)).
          Which scale recovers more is not settled: N(0, 1) did better on that digits case
          and at MNIST B = 32, worse at MNIST B = 16 (BENCHMARKS.md, ``tensor``).
          Bias ~ N(0, bias_scale²). The attack reads the bias as an extra input coordinate: it is
          the only thing that pins the *scale* of each input (ReLU is positively homogeneous),
          and a std of 1 matches the std of wᵀx for an input of norm √fan_in (unit variance per
          coordinate after normalisation), so the extra coordinate weighs like the image.
        * Output layer (the last Linear one, if any): A = output_scale/√width · v aᵀ (rank one),
          bias 0. Rank one gives every sample a single residual ρᵢ = vᵀrᵢ/B, so that vᵀ∂L/∂A[:, j] = g(wⱼ) and
          ∂L/∂wⱼ = aⱼ∇g(wⱼ) (paper §3's scalar output weights). aⱼ = ±1 with random signs: dividing
          by aⱼ amplifies no unit's noise. The small scale keeps the softmax near uniform, so no
          sample's residual vanishes by being confidently right. v has alternating signs and
          distinct magnitudes in [1, 2] (then normalised): every class gives |ρᵢ| above a floor,
          and distinct v_y make the label readable from ρᵢ.
        """
        config, seed = self.config, request.seed
        net = model.build(seed=seed)
        generator = torch.Generator().manual_seed(seed)
        weights = {name: tensor.clone() for name, tensor in net.state_dict().items()}
        first_name, first = first_weighted_layer(net)
        fan_in = first.weight[0].numel()
        weights[f"{first_name}.weight"] = torch.randn(first.weight.shape, generator=generator) / math.sqrt(fan_in)
        if first.bias is not None:
            weights[f"{first_name}.bias"] = config.bias_scale * torch.randn(first.bias.shape, generator=generator)
        layers = linear_layers(net)
        if not layers:  # no fully-connected output to make rank one: the rest stays as drawn
            return weights
        output_name, output = layers[-1]
        classes, width = output.weight.shape
        pattern = torch.tensor([(-1.0) ** c * (1 + c / classes) for c in range(classes)])
        signs = torch.where(torch.rand(width, generator=generator) < 0.5, -1.0, 1.0)
        weights[f"{output_name}.weight"] = config.output_scale / math.sqrt(width) * torch.outer(
            pattern / pattern.norm(), signs)
        if output.bias is not None:
            weights[f"{output_name}.bias"] = torch.zeros_like(output.bias)
        return weights


def random_query_weights(model: ModelSpec, seed: int) -> Weights:
    """The random query :class:`RandomQuery` sends at its default scales, drawn with ``seed`` outside
    a run (the theory benchmark and the tests query a model directly)."""
    crafting = RandomQuery(RandomQueryConfig(rounds=[1]))
    return crafting.craft(model, {}, CraftRequest(server_round=1, seed=seed))
