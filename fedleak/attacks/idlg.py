"""Improved DLG (Zhao, Mopuri & Bilen, 2020).

With cross-entropy, the output layer's bias gradient is ∂L/∂b_c = p_c − 1[c = y]:
negative for the true class only. Without a bias, the weight-gradient row of the
true class is (p_y − 1)·h, whose entries are ≤ 0 when the features h are
non-negative (sigmoid or ReLU before the last layer). So the label is read off the
sign, and DLG then optimises the image alone with that hard label.
"""

from __future__ import annotations

import torch

from fedleak.attacks.base import ATTACKS, AttackNotApplicable
from fedleak.attacks.dlg import DLG
from fedleak.models import ImageClassifier
from fedleak.models.base import linear_layers
from fedleak.updates import ClientUpdate


def label_from_output_layer(update: ClientUpdate, model: ImageClassifier) -> int:
    """iDLG's rule for a batch of one: the class whose output-layer gradient is negative."""
    name, layer = linear_layers(model)[-1]
    gradient = update.pseudo_gradient()
    if layer.bias is not None:
        return int(gradient[f"{name}.bias"].argmin())
    return int(gradient[f"{name}.weight"].sum(dim=1).argmin())


@ATTACKS.register("idlg")
class IDLG(DLG):
    def infer_labels(self, update: ClientUpdate, model: ImageClassifier) -> torch.Tensor:
        if update.known_labels is not None:
            return update.known_labels
        if update.metadata.num_examples != 1:
            raise AttackNotApplicable(
                f"idlg's label rule needs a batch of 1 (this update has "
                f"{update.metadata.num_examples} samples); use dlg"
            )
        return torch.tensor([label_from_output_layer(update, model)])
