"""The sanity check of lab updates: a client trained as the attacks model it is consistent; each
way a client can train otherwise is named (fedleak.adversary.sanity)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fedleak
from fedleak.adversary.sanity import check_update
from fedleak.core.updates import ClientUpdate, ReportedSamples, UpdateMetadata

MEAN, STD = 0.3, 0.4


class BatchNet(nn.Module):
    """A user's model with BatchNorm, its own key names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.out = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.norm(self.conv(x))).flatten(1))


SPEC = fedleak.Scenario.model_validate({
    "model": {"name": "test_sanity:BatchNet"},
    "app": {"image_shape": [1, 8, 8], "num_classes": 5, "mean": [MEAN], "std": [STD]}}).app_model_spec()


def _client(*, lr: float = 0.1, told_lr: float = 0.1, steps: int = 1, batch: int = 4, reduction: str = "mean",
            normalise: bool = True, batch_norm_eval: bool = False, weight_decay: float = 0.0,
            frozen: str | None = None, smoothing: float = 0.0, declared: int = 4) -> ClientUpdate:
    """A client of the user's app training on 4 samples its own way; the update the server captures."""
    torch.manual_seed(0)
    net = BatchNet()
    sent = {k: v.clone() for k, v in net.state_dict().items()}
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    inputs = (images - MEAN) / STD if normalise else images
    if frozen:
        getattr(net, frozen).requires_grad_(False)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=weight_decay)
    net.train(not batch_norm_eval)
    for step in range(steps):
        chosen = torch.arange(step * batch, step * batch + batch) % 4
        loss = F.cross_entropy(net(inputs[chosen]), labels[chosen], reduction=reduction, label_smoothing=smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    metadata = UpdateMetadata("fedsgd" if steps == 1 else "fedavg", told_lr, steps, batch, declared)
    return ClientUpdate("lab", 1, 7, 0, sent, net.state_dict(), metadata,
                        reported=ReportedSamples(images, labels))


def test_a_client_trained_as_the_attacks_model_it_is_consistent():
    verdict = check_update(SPEC, _client())
    assert verdict is not None and verdict.status == "consistent" and verdict.relative_error < 1e-4, verdict


@pytest.mark.parametrize(("client", "named"), [
    ({"frozen": "conv"}, "frozen layers: the client left conv.weight, conv.bias unchanged"),
    ({"normalise": False}, "normalisation"),
    ({"reduction": "sum"}, "loss reduction: the update is 4.00× the mean loss's over batches of 4, a summed loss; "
                           "give fedleak.attach lr=0.4"),
    ({"batch_norm_eval": True}, "BatchNorm mode"),
    ({"lr": 0.05}, "lr or local steps: the update is 0.5× what lr=0.1 over 1 steps gives; "
                   "give fedleak.attach lr=0.05"),
    ({"weight_decay": 0.01}, "weight decay: the update fits SGD with weight decay 0.01"),
    ({"smoothing": 0.2}, "unexplained"),
    ({"declared": 9}, "samples: the reply declares 9 examples, the client reported 4"),
])
def test_each_way_a_client_trains_otherwise_is_named(client, named):
    verdict = check_update(SPEC, _client(**client))
    assert verdict is not None and verdict.status == "mismatch" and named in verdict.detail, verdict


def test_several_local_steps_are_approximate_and_a_summed_loss_is_still_named():
    for lr in (0.1, 0.01):
        drifted = check_update(SPEC, _client(steps=2, batch=4, lr=lr, told_lr=lr))  # two epochs: no scale blamed
        assert drifted is not None and drifted.status == "approximate" and "2 local steps" in drifted.detail, drifted
    summed = check_update(SPEC, _client(steps=2, batch=2, reduction="sum", lr=0.01, told_lr=0.01))
    assert summed is not None and summed.status == "mismatch" and "loss reduction" in summed.detail, summed


def test_an_update_without_reported_samples_is_not_checked():
    update = _client()
    assert check_update(SPEC, ClientUpdate(update.run_id, 1, 7, 0, update.global_weights, update.client_weights,
                                           update.metadata)) is None
