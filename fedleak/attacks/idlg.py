"""Improved DLG (Zhao, Mopuri & Bilen, 2020): DLG with the labels read off the gradient.

With cross-entropy the output layer's gradient for class c is p_c − 1[c = y] (times
the features, without a bias): negative for the true class only. iDLG reads the label
off that sign and optimises the image alone. For batches larger than one we use the
count estimate of :mod:`fedleak.attacks.labels`, which reduces to that rule for one
sample.
"""

from __future__ import annotations

from fedleak.attacks.base import ATTACKS
from fedleak.attacks.dlg import DLG, DLGConfig
from fedleak.attacks.optimization import LabelSource


class IDLGConfig(DLGConfig):
    labels: LabelSource = "infer"


@ATTACKS.register("idlg")
class IDLG(DLG):
    Config = IDLGConfig
