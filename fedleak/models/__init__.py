"""Models by name (DLG's LeNet, an MLP, a small ConvNet) behind one registry, and by path:
``torchvision:NAME`` or a user's ``MODULE:CLASS`` (:mod:`fedleak.models.external`)."""

import sys

from fedleak.core.registry import import_submodules
from fedleak.models.base import MODELS, ImageClassifier, ModelConfig, ModelSpec

import_submodules(sys.modules[__name__])

__all__ = ["MODELS", "ImageClassifier", "ModelConfig", "ModelSpec"]
