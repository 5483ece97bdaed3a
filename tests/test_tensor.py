"""The tensor attack (Wang, Lee & Lei 2023) and the malicious random-parameter query it reads."""

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS, AttackNotApplicable, Budget
from fedleak.attacks.tensor import TensorConfig, recover
from fedleak.client.training import offline_update
from fedleak.crafting.random_query import random_query_weights
from fedleak.data import load_dataset
from fedleak.models.base import linear_layers

from conftest import tiny_scenario

WIDTH = 5000
"""Query points for d = 20. Measured (10 seeds each): B = 5 and 10 recover at 1,000 points,
B = 15 at 2,000, B = 20 = d in 8/10 at 2,000 and 10/10 at 5,000 (the flattened order-4
moment is a B²×B² matrix whose noise grows like B/√M)."""


def _synthetic_query(dim, batch, width, seed):
    """Unit inputs, residuals of both signs in [0.5, 1.5], and g, ∇g of Σᵢ ρᵢ relu(wᵀxᵢ) at w ~ N(0, I)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    inputs /= inputs.norm(dim=1, keepdim=True)
    residuals = (torch.rand(batch, generator=generator, dtype=torch.float64) + 0.5) * torch.where(
        torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0).double()
    points = torch.randn(width, dim, generator=generator, dtype=torch.float64)
    pre = points @ inputs.T
    values = pre.clamp_min(0) @ residuals
    gradients = ((pre > 0).double() * residuals) @ inputs
    return inputs, points, values, gradients


@pytest.mark.parametrize("batch", [5, 12, 20])
def test_core_recovers_up_to_d_random_unit_vectors(batch):
    inputs, points, values, gradients = _synthetic_query(20, batch, WIDTH, seed=batch)
    found = recover(points, values, gradients, batch, config=TensorConfig(seed=batch))
    cosine = (found.directions @ inputs.T).numpy()
    rows, cols = linear_sum_assignment(-cosine)
    assert cosine[rows, cols].min() > 0.99  # signs included: −xᵢ would score −1
    assert found.gradient_loss < 1e-10 and found.value_loss < 1e-10


def _digits_query(batch, width, seed, model=None):
    scenario = tiny_scenario(model=model or {"name": "mlp", "widths": [width]}, training={"batch_size": batch})
    splits = load_dataset(scenario.dataset)
    spec = scenario.model_spec(splits)
    sent = random_query_weights(spec, seed)
    index = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:batch]
    update = offline_update(spec, sent, splits.train, [index.numpy()], lr=0.1)
    return update, spec, splits.train.images[index], splits.train.labels[index]


def test_a_crafted_random_query_gives_the_batch_and_its_labels_away():
    # Measured with seeds 0 and 1: every image above 77 dB, all labels right (40 dB leaves margin).
    update, spec, images, labels = _digits_query(batch=4, width=2000, seed=0)
    recon = ATTACKS.get("tensor")(TensorConfig()).run(update, spec.with_weights(update.global_weights), Budget())
    scores = score(recon.images, images, recon.labels, labels)
    assert scores.psnr.min() > 40 and scores.label_accuracy == 1.0
    assert recon.extras["rank_one_residual"] < 1e-6 and recon.extras["scale"] == "bias"


def test_time_budget_stops_the_attack():
    update, spec, _, _ = _digits_query(batch=4, width=500, seed=0)
    recon = ATTACKS.get("tensor")(TensorConfig()).run(update, spec.with_weights(update.global_weights), Budget(0))
    assert recon.extras["stopped_by_budget"] and recon.images.shape == (4, *spec.image_shape)


@pytest.mark.parametrize("model", [{"name": "lenet"}, {"name": "mlp", "widths": [32]}, {"name": "convnet"}])
def test_random_query_is_a_seeded_state_dict_with_a_rank_one_output_layer(model):
    scenario = tiny_scenario(model=model)
    spec = scenario.model_spec(load_dataset(scenario.dataset))
    weights = random_query_weights(spec, seed=3)
    built = spec.with_weights(weights)  # strict load: every key, every shape
    output_name, _ = linear_layers(built)[-1]
    assert torch.linalg.matrix_rank(weights[f"{output_name}.weight"].double()) == 1
    assert all(torch.equal(w, v) for w, v in zip(weights.values(), random_query_weights(
        spec, seed=3).values()))
    assert not torch.equal(weights[output_name + ".weight"],
                           random_query_weights(spec, seed=4)[output_name + ".weight"])


def test_tensor_refuses_a_convolutional_model():
    update, spec, _, _ = _digits_query(batch=2, width=0, seed=0, model={"name": "convnet", "channels": [4, 4]})
    with pytest.raises(AttackNotApplicable, match="one-hidden-layer MLP"):
        ATTACKS.get("tensor")(TensorConfig()).run(update, spec.with_weights(update.global_weights), Budget())
