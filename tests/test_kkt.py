"""The KKT attack (Haim et al. 2022; Buzaglo et al. 2023) recovers digits from trained MLP weights.

Setting, scaled down from Haim et al.'s MNIST experiment: 20 bundled 8×8 digits (balanced),
a bias-free MLP 64-100-100-K (homogeneous, as their theory needs), its first layer
initialised ~ N(0, 10⁻⁸), inputs reduced by the training set's per-pixel mean (their
``data_reduce_mean``), full-batch gradient descent in float64 to (near) zero loss.

8×8 digits are so alike that any real digit has SSIM > 0.4 to most training
digits, so besides the paper's count the tests ask for *exact* recoveries: training images
that are, among all 1,500 pool digits, the nearest to some reconstruction, at SSIM > 0.6.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from fedleak.attacks import ATTACKS, AttackNotApplicable, Budget
from fedleak.attacks.kkt import exact_recoveries, nearest_reconstruction_ssim
from fedleak.core.config import DatasetConfig
from fedleak.core.updates import ClientUpdate, UpdateMetadata
from fedleak.data import load_dataset
from fedleak.models import ImageClassifier
from fedleak.models.mlp import MLP, MLPConfig

pytestmark = pytest.mark.xdist_group("test_kkt")  # its module fixture runs once, on one worker

TRAIN_SIZE = 20
EPOCHS = 6000
TRAIN_LR = 0.5
ATTACK_ITERATIONS = 2500


def _training_digits(num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool indices, images and targets of 20 balanced digits (odd/even for one logit, else the digit)."""
    pool = load_dataset(DatasetConfig()).train
    groups = pool.labels % 2 if num_classes == 1 else pool.labels
    classes = 2 if num_classes == 1 else num_classes
    index = torch.cat([torch.nonzero(groups == c)[: TRAIN_SIZE // classes, 0] for c in range(classes)])
    return index, pool.images[index], groups[index]


def _trained_update(num_classes: int) -> tuple[ClientUpdate, ImageClassifier, torch.Tensor]:
    """A client's model trained to (near) zero loss from a small initialisation, as its update."""
    index, images, targets = _training_digits(num_classes)
    torch.manual_seed(0)
    body = MLP(MLPConfig(widths=[100, 100], bias=False), (1, 8, 8), num_classes)
    # The per-pixel mean, as Haim et al. reduce the data (dataset.normalization = "pixel").
    model = ImageClassifier(body, (1, 8, 8), num_classes, mean=images.mean(dim=0).flatten().tolist(), std=[1.0])
    with torch.no_grad():
        body.layers[1].weight.normal_(0, 1e-4)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    network = model.double()
    optimizer = torch.optim.SGD(network.parameters(), lr=TRAIN_LR)
    torch.set_flush_denormal(True)  # the binary run meets subnormal floats that slow the CPU ~5×
    for _ in range(EPOCHS):
        logits = network(images.double())
        if num_classes == 1:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], targets.double())
        else:
            loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_flush_denormal(False)
    assert loss.item() < 1e-3
    trained = {k: v.float() for k, v in network.state_dict().items()}
    global_model = network.float()
    global_model.load_state_dict(sent)
    metadata = UpdateMetadata("fedavg", TRAIN_LR, EPOCHS, TRAIN_SIZE, TRAIN_SIZE)
    return ClientUpdate("test", 1, 0, 0, sent, trained, metadata), global_model, index


def _exact_recoveries(recon: torch.Tensor, train_index: torch.Tensor) -> int:
    return exact_recoveries(recon, load_dataset(DatasetConfig()).train.images, train_index)


def _attack(update: ClientUpdate, model: ImageClassifier, **config) -> tuple:
    attack = ATTACKS.get("kkt")(ATTACKS.get("kkt").Config(**config))
    return attack.run(update, model, Budget())


@pytest.fixture(scope="module")
def binary():
    return _trained_update(num_classes=1)


def test_recovers_training_digits_of_a_binary_mlp(binary):
    update, model, index = binary
    recon = _attack(update, model, iterations=ATTACK_ITERATIONS)
    truth = load_dataset(DatasetConfig()).train.images[index]
    paper_count = int((nearest_reconstruction_ssim(recon.images, truth) > 0.4).sum())
    assert recon.images.shape == (2 * TRAIN_SIZE, 1, 8, 8)
    assert 0 <= recon.images.min() and recon.images.max() <= 1
    assert recon.labels.bincount().tolist() == [TRAIN_SIZE, TRAIN_SIZE]
    assert paper_count >= 1
    assert _exact_recoveries(recon.images, index) >= 5  # measured: 9 of 20 (untrained weights: 0)


def test_reads_the_returned_weights(binary):
    update, model, index = binary
    untrained = dataclasses.replace(update, client_weights=update.global_weights)
    recon = _attack(untrained, model, iterations=ATTACK_ITERATIONS)
    assert _exact_recoveries(recon.images, index) == 0


def test_recovers_training_digits_of_a_ten_class_mlp():
    update, model, index = _trained_update(num_classes=10)
    recon = _attack(update, model, iterations=ATTACK_ITERATIONS, multiclass_margins="all")
    assert recon.labels.bincount().tolist() == [4] * 10
    assert _exact_recoveries(recon.images, index) >= 5  # measured: 16 of 20


def test_budget_seed_and_fit(binary):
    update, model, _ = binary
    stopped = ATTACKS.get("kkt")(ATTACKS.get("kkt").Config(iterations=100_000)).run(update, model, Budget(0.3))
    assert stopped.extras["stopped_by_budget"] and 0 < stopped.extras["iterations"] < 100_000
    first, second = (_attack(update, model, iterations=3, seed=7).images for _ in range(2))
    assert torch.equal(first, second)
    assert not torch.equal(first, _attack(update, model, iterations=3, seed=8).images)
    two_logits = ImageClassifier(MLP(MLPConfig(bias=False), (1, 8, 8), 2), (1, 8, 8), 2, [0.0], [1.0])
    with pytest.raises(AttackNotApplicable, match="2 outputs"):
        _attack(update, two_logits, iterations=1)
