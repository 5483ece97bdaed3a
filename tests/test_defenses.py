"""Each defense's exact contract, the pipeline's composition rules, and the wire format."""

import math

import numpy as np
import pytest
import torch

from fedleak.core.errors import FedleakError
from fedleak.defenses import DEFENSES, DefensePipeline
from fedleak.defenses.local_dp import clip_update
from fedleak.federation import records

from conftest import tiny_scenario


def _stage(name, **config):
    cls = DEFENSES.get(name)
    return cls(cls.Config(**config))


def _update(seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(6, 1, 5, 5, generator=g) * scale, "fc.weight": torch.randn(10, 84, generator=g) * scale,
            "fc.bias": torch.randn(10, generator=g) * scale}


def _norm(delta):
    return float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta.values())))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_clipping_bounds_the_norm_and_leaves_small_updates_alone():
    big, small = _update(scale=10.0), _update(scale=1e-3)
    assert _norm(clip_update(big, 1.5)) == pytest.approx(1.5, rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(clip_update(small, 1.5).values(), small.values()))
    clipped_noised = _stage("local-dp", clip_norm=1.0, std=0.0).apply(big, _gen())
    assert _norm(clipped_noised) <= 1.0 + 1e-6


@pytest.mark.parametrize("mechanism, excess_kurtosis", [("gaussian", 0.0), ("laplace", 3.0)])
def test_noise_has_the_configured_std_and_shape(mechanism, excess_kurtosis):
    zeros = {"w": torch.zeros(400_000)}
    noise = _stage("local-dp", mechanism=mechanism, std=0.05).apply(zeros, _gen())["w"].double()
    assert noise.mean().abs() < 0.05 * 0.01
    assert noise.std().item() == pytest.approx(0.05, rel=0.01)
    kurtosis = ((noise - noise.mean()) ** 4).mean() / noise.var() ** 2 - 3
    assert kurtosis.item() == pytest.approx(excess_kurtosis, abs=0.1)


def test_noise_multiplier_scales_with_the_clip_norm_and_is_seeded():
    stage = _stage("local-dp", clip_norm=2.0, noise_multiplier=0.5)
    zeros = {"w": torch.zeros(200_000)}
    first = stage.apply(zeros, _gen(1))["w"]
    assert first.std().item() == pytest.approx(1.0, rel=0.01)
    assert torch.equal(first, stage.apply(zeros, _gen(1))["w"])
    assert not torch.equal(first, stage.apply(zeros, _gen(2))["w"])


def test_fp16_and_bf16_error_bounds_and_wire_types():
    delta = _update(scale=0.01)
    # Round to nearest: relative error ≤ the unit roundoff for normal numbers, and at most
    # half the subnormal spacing (fp16: 2⁻²⁴) below the smallest normal number.
    for name, dtype, unit_roundoff, subnormal in (("fp16", np.float16, 2**-11, 2**-25), ("bf16", np.int16, 2**-8, 0)):
        stage = _stage(name)
        arrays = stage.encode(delta, _gen())
        assert all(a.dtype == dtype for a in arrays.values())
        decoded = type(stage).decode(arrays)
        for k, d in delta.items():
            assert ((decoded[k] - d).abs() <= d.abs() * unit_roundoff + subnormal).all(), name
            assert not torch.equal(decoded[k], d)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_int8_uses_8_bit_codes_within_its_error_bound(rounding):
    delta = _update(scale=0.01)
    stage = _stage("int8", rounding=rounding)
    arrays = stage.encode(delta, _gen())
    decoded = type(stage).decode(arrays)
    for k, d in delta.items():
        codes, scale = arrays[k], float(arrays[k + ":scale"][0])
        assert codes.dtype == np.int8 and np.abs(codes).max() == 127
        assert scale == pytest.approx(float(d.abs().max()) / 127)
        bound = scale / 2 if rounding == "nearest" else scale
        assert ((decoded[k] - d).abs() <= bound * (1 + 1e-5)).all()


def test_stochastic_int8_rounding_is_unbiased():
    x = {"w": torch.linspace(-1, 1, 1001)}
    stage = _stage("int8", rounding="stochastic")
    mean = torch.stack([type(stage).decode(stage.encode(x, _gen(i)))["w"] for i in range(400)]).mean(0)
    scale = 1 / 127
    assert (mean - x["w"]).abs().max() < scale / 4  # one draw is off by up to a whole step


def test_top_k_keeps_exactly_the_largest_ceil_k_n_entries():
    delta = _update()
    n = sum(d.numel() for d in delta.values())
    kept = _stage("top-k", keep=0.013).apply(delta, _gen())
    flat, orig = torch.cat([d.flatten() for d in kept.values()]), torch.cat([d.flatten() for d in delta.values()])
    count = math.ceil(0.013 * n)
    assert int((flat != 0).sum()) == count
    assert set(torch.nonzero(flat).flatten().tolist()) == set(torch.topk(orig.abs(), count).indices.tolist())
    assert torch.equal(flat[flat != 0], orig[flat != 0])


def test_random_k_keeps_ceil_k_n_random_entries_rescaled_if_asked():
    delta = _update()
    n = sum(d.numel() for d in delta.values())
    count = math.ceil(0.3 * n)
    plain = torch.cat([d.flatten() for d in _stage("random-k", keep=0.3).apply(delta, _gen()).values()])
    scaled = torch.cat([d.flatten() for d in _stage("random-k", keep=0.3, rescale=True).apply(delta, _gen()).values()])
    assert int((plain != 0).sum()) == count
    assert torch.allclose(scaled, plain * n / count)


def test_pruning_zeroes_each_layers_smallest_fraction():
    delta = _update()
    pruned = _stage("prune", fraction=0.7).apply(delta, _gen())
    for k, d in delta.items():
        removed = math.floor(0.7 * d.numel())
        zeroed = (pruned[k] == 0).flatten()
        assert int(zeroed.sum()) == removed
        threshold = d.abs().flatten().sort().values[removed - 1]
        assert (d.abs().flatten()[zeroed] <= threshold).all() and (d.abs().flatten()[~zeroed] >= threshold).all()


@pytest.mark.parametrize("defenses, message", [
    ([{"name": "int8"}, {"name": "top-k"}], "'int8' sets the wire format, so it must be the last defense"),
    ([{"name": "secagg-plus"}, {"name": "fp16"}], "cannot be combined with a defense that runs as a Flower mod"),
    ([{"name": "central-dp"}, {"name": "secagg-plus"}], "CentralDP wraps a Message API strategy"),
    ([{"name": "dp-sgd"}, {"name": "dp-sgd"}], "at most one defense can change local training"),
    ([{"name": "local-dp"}], "set exactly one of 'std' and 'noise_multiplier'"),
    ([{"name": "local-dp", "noise_multiplier": 1.0}], "'noise_multiplier' needs 'clip_norm'"),
    ([{"name": "secagg-plus", "modulus_range": 100}], "modulus_range: must be greater than quantization_range"),
])
def test_bad_defense_combinations_are_one_line_errors(defenses, message):
    with pytest.raises(FedleakError) as error:
        tiny_scenario(defenses=defenses)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_server_decodes_what_the_client_encoded():
    sent, delta = _update(seed=1), _update(seed=2, scale=0.01)
    arrays = _stage("int8").encode(delta, _gen())
    content = records.reply_content(arrays, "int8", {"num-examples": 1})
    received = records.received_weights(content, sent)
    expected = {k: sent[k] + v for k, v in DEFENSES.get("int8").decode(arrays).items()}
    assert all(torch.equal(received[k], expected[k]) for k in sent)
    plain = records.received_weights(records.reply_content({k: v.numpy() for k, v in sent.items()}, None, {}), sent)
    assert all(torch.equal(plain[k], sent[k]) for k in sent)


def test_pipeline_runs_stages_in_order_with_one_seeded_stream():
    pipeline = DefensePipeline([_stage("prune", fraction=0.5), _stage("local-dp", std=1e-3)])
    delta = _update()
    first = pipeline.apply(delta, DefensePipeline.generator(0, 1, 2))
    again = pipeline.apply(delta, DefensePipeline.generator(0, 1, 2))
    other = pipeline.apply(delta, DefensePipeline.generator(0, 2, 2))
    assert all(torch.equal(first[k], again[k]) for k in delta)
    assert not torch.equal(first["fc.weight"], other["fc.weight"])
    assert int((first["fc.weight"] == 0).sum()) == 0  # noise came after the pruning


@pytest.mark.parametrize("num_shares", [1, 2, 3, 5, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("threshold", [1, 2, 3, 4, 0.5, 1.0, 1.5])
@pytest.mark.parametrize(("quantization", "modulus"), [(2**22, 2**32), (2**22, 2**22), (2**22, 3 * 2**30), (8, 16)])
def test_secagg_parameters_are_checked_as_flower_checks_them(num_shares, threshold, quantization, modulus):
    """The scenario validates SecAgg+ without importing Flower; it must accept exactly what Flower accepts."""
    from flwr.server.workflow import SecAggPlusWorkflow
    from pydantic import ValidationError

    parameters = {"num_shares": num_shares, "reconstruction_threshold": threshold,
                  "quantization_range": quantization, "modulus_range": modulus}
    try:
        SecAggPlusWorkflow(**parameters)
        flower_accepts = True
    except (TypeError, ValueError):
        flower_accepts = False
    try:
        DEFENSES.get("secagg-plus").Config(**parameters)
        ours_accepts = True
    except ValidationError:
        ours_accepts = False
    assert ours_accepts == flower_accepts


class _Centred(torch.nn.Linear):
    """A linear layer that subtracts a stored centre: trainable, with a buffer, and no BatchNorm."""

    def __init__(self) -> None:
        super().__init__(64, 10)
        self.register_buffer("centre", torch.zeros(64))

    def forward(self, x):
        return super().forward(x - self.centre)


def test_dp_sgd_refuses_before_the_run_every_layer_opacus_refuses_when_training():
    dp_sgd = DEFENSES.get("dp-sgd")(DEFENSES.get("dp-sgd").Config())
    dp_sgd.check_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))  # nothing to refuse
    centred = torch.nn.Sequential(torch.nn.Flatten(), _Centred())
    with pytest.raises(ValueError, match=r"^Opacus cannot train 1 layer\(s\) of this model .*, the first 1 \(_Centred\);"):
        dp_sgd.check_model(centred)
    from opacus import GradSampleModule

    with pytest.raises(NotImplementedError, match="trainable layer with buffers"):  # what a client's round would meet
        GradSampleModule(centred)


def test_numpys_global_generator_is_seeded_only_for_central_dp_and_given_back_after_each_round():
    from fedleak.federation.strategy import seeded_global_numpy

    assert tiny_scenario(defenses=[{"name": "central-dp"}]).defense_pipeline().draws_global_numpy
    assert not tiny_scenario(defenses=[{"name": "local-dp", "std": 0.1}, {"name": "int8"}]).defense_pipeline().draws_global_numpy
    np.random.seed(7)
    expected_next = np.random.rand()
    np.random.seed(7)
    with seeded_global_numpy(3, 2):  # the scenario's seed 3, round 2: the wrapper's noise is the scenario's
        drawn = np.random.rand(4)
    assert np.random.rand() == expected_next  # the process's own stream goes on where it was
    np.random.seed((3 * 1_000_003 + 2) % 2**32)
    assert np.array_equal(drawn, np.random.rand(4))
    np.random.seed(7)
    with seeded_global_numpy(None, 2):  # no central DP: untouched
        assert np.random.rand() == expected_next
