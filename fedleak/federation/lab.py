"""A lab client's side channel: the samples it trained on, sent beside its update.

In a lab run of a user's app the clients may tell the server what they trained on, so the
attacks are scored exactly as in a fedleak run. Two pieces, both on the client:

* :func:`recorded` wraps the training dataset. While a train message is handled, every
  sample its ``__getitem__`` returns is kept (once per index), as the model saw it —
  augmented, if the transforms augment — turned back into a [0, 1] image with the
  normalisation given.
* :func:`client_mod` is a Flower mod (``ClientApp(mods=[fedleak.client_mod])``): around a
  train message it starts the recording and adds what was recorded to the reply as one more
  ArrayRecord, :data:`~fedleak.core.wire.TRUTH`, which an attached server
  (:func:`fedleak.attach`) stores and removes before the strategy aggregates.

The recording lives in the process and thread that run the ClientApp, so a DataLoader must
load in that process (``num_workers=0``); samples loaded by worker processes are not seen.
Never use this outside a lab: it sends the client's data to the server.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable

from fedleak.core import wire

_recording = threading.local()


class RecordedDataset(torch.utils.data.Dataset[Any]):
    """A dataset whose samples are recorded while :func:`client_mod` handles a train message."""

    def __init__(self, dataset: Any, mean: Sequence[float], std: Sequence[float], image_key: str | int,
                 label_key: str | int) -> None:
        self.dataset = dataset
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.image_key = image_key
        self.label_key = label_key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        samples: dict[int, tuple[torch.Tensor, int]] | None = getattr(_recording, "samples", None)
        if samples is not None and index not in samples:
            image = torch.as_tensor(sample[self.image_key], dtype=torch.float32)
            samples[index] = (image * self.std + self.mean, int(sample[self.label_key]))
        return sample


def recorded(dataset: Any, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
             image_key: str | int = 0, label_key: str | int = 1) -> RecordedDataset:
    """``dataset`` with its samples recorded for :func:`client_mod`.

    Parameters
    ----------
    dataset : Any
        A map-style dataset whose samples are ``(image, label)`` tuples or mappings.
    mean, std : Sequence[float]
        The normalisation its transforms apply (per channel), undone for the recorded images.
    image_key, label_key : str | int
        Where a sample holds the image tensor (C, H, W) and the label: ``0``/``1`` for
        torchvision's tuples, e.g. ``"img"``/``"label"`` for a Hugging Face dataset.
    """
    return RecordedDataset(dataset, mean, std, image_key, label_key)


def client_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """The Flower mod adding a train reply's recorded samples (see the module docstring)."""
    if message.metadata.message_type != "train":
        return call_next(message, context)
    _recording.samples = {}
    try:
        reply = call_next(message, context)
        samples: Mapping[int, tuple[torch.Tensor, int]] = _recording.samples
    finally:
        _recording.samples = None
    if samples and not reply.has_error():
        ordered = [samples[index] for index in sorted(samples)]
        reply.content[wire.TRUTH] = ArrayRecord({
            wire.TRUTH_IMAGES: Array(torch.stack([image for image, _ in ordered]).numpy()),
            wire.TRUTH_LABELS: Array(np.array([label for _, label in ordered], dtype=np.int64)),
        })
    return reply
