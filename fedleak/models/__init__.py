"""Models by name (DLG's LeNet, an MLP, a small ConvNet) behind one registry."""

import sys

from fedleak.models.base import MODELS, ImageClassifier, ModelConfig, ModelSpec
from fedleak.registry import import_submodules

import_submodules(sys.modules[__name__])

__all__ = ["MODELS", "ImageClassifier", "ModelConfig", "ModelSpec"]
