"""Where an attack computes, and in what float32 arithmetic.

Optimisation attacks (DLG, iDLG, Inverting Gradients, GRNN, KKT) take a ``device``
option; the closed-form ones (analytic, linear, tensor) run where the update lies, on the
CPU. Whatever the device, an attack hands back CPU tensors and leaves the model it was
given where it was (the attack contract): it computes on a copy.

On a GPU, PyTorch lets cuDNN convolutions use TF32 (10 mantissa bits, a relative error
of about 1e-3) by default. Gradient matching drives the distance between two gradients
towards zero, and DLG counts an image recovered at MSE < 1e-3: rounding of that size
in every convolution would put a floor under the objective that the CPU does not have,
and an audit run on a GPU would report less leakage than the same audit on a CPU. The
runners therefore run every attack inside :func:`ieee_float32` (``runners.execute_batch``);
code that calls an attack directly wraps the call itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from fedleak.attacks.base import AttackConfig

AttackDevice = Literal["auto", "cpu", "cuda"]


class DeviceConfig(AttackConfig):
    """Options of an attack that computes on a chosen device."""

    device: AttackDevice = "auto"
    """Where the attack computes; ``auto``: the first visible GPU, else the CPU (a Ray worker
    sees only the GPU share it reserved: ``runner.num_gpus``)."""

    def torch_device(self) -> torch.device:
        """The device ``device`` names on this machine."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Convolutions and matrix products in IEEE float32 (no TF32) while the block runs;
    the process's own settings are put back after it, also when it raises.

    PyTorch's ``allow_tf32`` flags, not the newer ``fp32_precision`` ones: once the newer
    ones are set, reading the older ones raises, and other code in the process may read them.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before
