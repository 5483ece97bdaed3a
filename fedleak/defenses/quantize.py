"""Quantization of the update on the wire: fp16, bf16, int8.

The client sends the quantized representation of Δ (``encode``); the server decodes
it (``decode``) before it captures or aggregates anything, so every attack sees
exactly what the server received. Each quantizer sets the wire format and therefore
must be the last defense.

* ``fp16``/``bf16``: round-to-nearest casts (relative error ≤ 2⁻¹¹ / 2⁻⁸ for normal
  numbers). NumPy has no bfloat16, so bf16 travels as its raw 16 bits.
* ``int8``: per-tensor symmetric codes q ∈ [−127, 127] with scale s = max|Δ| / 127
  (Jacob et al. 2018); x ≈ s·q. Round to nearest (|error| ≤ s/2) or stochastically
  (q = ⌊x/s + u⌋, u ~ U[0, 1): unbiased, |error| < s; as in QSGD, Alistarh et al. 2017).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch

from fedleak.core.config import Strict
from fedleak.core.updates import Weights
from fedleak.defenses.base import DEFENSES, Defense


class NoParameters(Strict):
    pass


class Int8Config(Strict):
    rounding: Literal["nearest", "stochastic"] = "nearest"


class _HalfPrecision(Defense):
    """A 16-bit float cast; ``dtype`` picks the format and ``wire`` how NumPy carries it."""

    Config = NoParameters
    dtype: ClassVar[torch.dtype]
    wire: ClassVar[torch.dtype]

    def encode(self, delta: Weights, generator: torch.Generator) -> dict[str, np.ndarray]:
        return {k: d.to(self.dtype).view(self.wire).numpy() for k, d in delta.items()}

    @classmethod
    def decode(cls, arrays: dict[str, np.ndarray]) -> Weights:
        return {k: torch.from_numpy(np.asarray(a)).view(cls.dtype).float() for k, a in arrays.items()}


@DEFENSES.register("fp16")
class Float16(_HalfPrecision):
    encoding = "fp16"
    dtype = wire = torch.float16


@DEFENSES.register("bf16")
class BFloat16(_HalfPrecision):
    encoding = "bf16"
    dtype, wire = torch.bfloat16, torch.int16


_SCALE = ":scale"  # suffix of the per-tensor scale's key next to each tensor's codes


@DEFENSES.register("int8")
class Int8(Defense):
    Config = Int8Config
    config: Int8Config
    encoding = "int8"

    def encode(self, delta: Weights, generator: torch.Generator) -> dict[str, np.ndarray]:
        arrays = {}
        for name, d in delta.items():
            amax = float(d.abs().max()) if d.numel() else 0.0
            scale = amax / 127 if amax > 0 else 1.0
            scaled = d.double() / scale
            if self.config.rounding == "stochastic":
                codes = torch.floor(scaled + torch.rand(d.shape, generator=generator, dtype=torch.float64))
            else:
                codes = torch.round(scaled)
            arrays[name] = codes.clamp(-127, 127).to(torch.int8).numpy()
            arrays[name + _SCALE] = np.array([scale], dtype=np.float32)
        return arrays

    @classmethod
    def decode(cls, arrays: dict[str, np.ndarray]) -> Weights:
        return {k: torch.from_numpy(np.asarray(a)).float() * float(arrays[k + _SCALE][0])
                for k, a in arrays.items() if not k.endswith(_SCALE)}
