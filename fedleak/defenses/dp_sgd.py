"""DP-SGD during local training (Abadi et al. 2016) with Opacus.

Every local step clips each sample's gradient to L2 norm ``max_grad_norm`` = C, sums
them, adds N(0, (z·C)²) and divides by the batch size (``opacus.optimizers.DPOptimizer``
over a ``GradSampleModule``). Accounting follows Opacus: each step is the sampled
Gaussian mechanism with rate q = batch size / shard size. Opacus' amplification by
sampling assumes Poisson sampling; the data plan draws fixed-size batches, so like
Opacus with ``poisson_sampling=False`` the reported ε is the customary estimate.
"""

from __future__ import annotations

import re
import warnings

import torch
from pydantic import Field
from torch import nn

from fedleak.core.config import Strict
from fedleak.core.errors import first_line
from fedleak.defenses.base import DEFENSES, Defense, LocalRound, PrivacyEvent, TrainingWrapper

# Opacus' per-sample hooks fire on module outputs because images do not require grad;
# torch warns about that on every step, though the per-sample gradients are right.
warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)


class DPSGDConfig(Strict):
    noise_multiplier: float = Field(1.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)


@DEFENSES.register("dp-sgd")
class DPSGD(Defense):
    Config = DPSGDConfig
    config: DPSGDConfig

    def private_training(self, batch_size: int, generator: torch.Generator) -> TrainingWrapper:
        def wrap(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
            from opacus import GradSampleModule  # Opacus only where a client trains, not to validate
            from opacus.optimizers import DPOptimizer

            private = DPOptimizer(optimizer, noise_multiplier=self.config.noise_multiplier,
                                  max_grad_norm=self.config.max_grad_norm,
                                  expected_batch_size=batch_size, generator=generator)
            return GradSampleModule(model), private

        return wrap

    def check_model(self, model: nn.Module) -> None:
        """Opacus computes per-sample gradients, and when a client wraps its model for that
        (``GradSampleModule``, strict) it refuses every layer it cannot serve — any trainable layer
        with buffers, BatchNorm among them, whose buffers would mix the samples of a batch. The same
        validation of Opacus runs here, before the run, instead of failing its first round."""
        from opacus import GradSampleModule

        errors = GradSampleModule.validate(model, strict=False)
        if errors:
            raise ValueError(f"Opacus cannot train {len(errors)} layer(s) of this model (its per-sample-gradient "
                             f"validation), the first {_layer_named_in(errors[0])}; choose a model without "
                             f"BatchNorm or other trainable layers with buffers")

    def privacy_events(self, local_round: LocalRound) -> list[PrivacyEvent]:
        rate = min(1.0, local_round.batch_size / local_round.shard_size)
        return [PrivacyEvent(self.config.noise_multiplier, rate, local_round.local_steps)]


def _layer_named_in(error: Exception) -> str:
    """``name (Class)`` of the layer an Opacus validation error describes as ``(name:Class(...))``; else its text."""
    found = re.search(r"\(([\w.]+):(\w+)\(", str(error))
    return f"{found[1]} ({found[2]})" if found else first_line(error)
