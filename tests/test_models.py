"""Models named by path: torchvision classifiers and a user's own nn.Module, keys without a
``body.`` prefix, BatchNorm simulated as clients train it, attacks that need another
structure stored as not applicable."""

import copy
import json
import pickle
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from ray import cloudpickle
from torch import nn

from fedleak import cli
from fedleak.adversary.progress import Progress
from fedleak.attacks import ATTACKS
from fedleak.attacks.base import Budget
from fedleak.attacks.gradients import parameter_gradient
from fedleak.client.local_round import local_round
from fedleak.core.config import DatasetConfig
from fedleak.core.errors import FedleakError
from fedleak.core.updates import ClientUpdate
from fedleak.data import DatasetSplits, ImageDataset, build_plan, load_dataset
from fedleak.federation import build_server_app, records, run_simulated
from fedleak.federation.client_app import train
from fedleak.federation.replies import check_weights
from fedleak.models import ImageClassifier, ModelSpec
from fedleak.results.store import ResultStore, new_run_dir
from fedleak.runners import AttackJob, execute
from fedleak.scenario.preflight import check_runnable

from conftest import fedsgd_update, tiny_scenario

pytestmark = pytest.mark.xdist_group("test_models")  # its module fixture runs once, on one worker

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the simulated clients cannot import this module

COLOUR = "colour-test"
RESNET = {"name": "torchvision:resnet18"}
USER_MODULE = "fedleak_test_user_models"
QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml")


class ColourConfig(DatasetConfig):
    name: Literal["colour-test"] = COLOUR


class Colour:
    """48 training and 16 test 3×32×32 colour images: smooth random patterns (4×4 upsampled), 10 classes."""

    Config = ColourConfig

    @staticmethod
    def load(config: ColourConfig) -> DatasetSplits:
        generator = torch.Generator().manual_seed(0)
        coarse = torch.rand(64, 3, 4, 4, generator=generator)
        images = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
        labels = torch.arange(64) % 10
        return DatasetSplits(COLOUR, ImageDataset(images[:48], labels[:48]), ImageDataset(images[48:], labels[48:]), 10)


def _register_colour() -> None:
    """Register the test dataset once per process (the simulated clients run in Ray actors)."""
    from fedleak.data import DATASETS  # imported here: a global would travel to the actors as a copy

    if COLOUR not in DATASETS.names():
        DATASETS.register(COLOUR)(Colour)


_register_colour()


def _colour_scenario(**table):
    return tiny_scenario(**{"dataset": {"name": COLOUR}, "model": RESNET, **table})


def _spec(scenario):
    return scenario.model_spec(load_dataset(scenario.dataset))


# --- torchvision ------------------------------------------------------------------------------


def test_resnet18_on_32_pixel_images_gets_the_small_stem_and_its_own_state_dict_keys():
    import torchvision

    model = _spec(_colour_scenario()).build()
    conv1 = model.body.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride, conv1.padding) == (3, (3, 3), (1, 1), (1, 1))
    assert conv1.bias is None and isinstance(model.body.maxpool, nn.Identity)
    keys = list(model.state_dict())
    assert not any(key.startswith("body.") for key in keys)
    assert keys == list(torchvision.models.resnet18(num_classes=10).state_dict())  # torchvision's own names
    assert model.state_dict()["bn1.num_batches_tracked"].dtype == torch.int64
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    model.load_state_dict(model.state_dict())  # and the same keys load


def test_the_stem_follows_the_image_size_unless_set_and_the_first_conv_reads_the_dataset_channels():
    def built(image_shape, **config):
        scenario = tiny_scenario(model={**RESNET, **config})
        spec = ModelSpec(scenario.model.name, scenario.model.config, image_shape, 10, (0.5,) * image_shape[0],
                         (0.5,) * image_shape[0])
        with torch.device("meta"):
            return spec.build().body

    assert built((3, 224, 224)).conv1.kernel_size == (7, 7) and isinstance(built((3, 224, 224)).maxpool, nn.MaxPool2d)
    assert built((3, 224, 224), small_input=True).conv1.kernel_size == (3, 3)
    assert built((3, 32, 32), small_input=False).conv1.kernel_size == (7, 7)
    assert built((1, 8, 8)).conv1.in_channels == 1
    assert built((1, 224, 224)).conv1.in_channels == 1
    assert built((1, 32, 32), name="torchvision:mobilenet_v2").features[0][0].in_channels == 1  # not a ResNet


def test_torchvision_keys_are_the_constructors_and_are_validated():
    model = _spec(_colour_scenario(model={**RESNET, "zero_init_residual": True})).build()
    assert not model.body.layer1[0].bn2.weight.detach().any()  # zero_init_residual reached the builder
    with pytest.raises(FedleakError, match=r"^scenario: model\.bogus: Extra inputs are not permitted$"):
        tiny_scenario(model={**RESNET, "bogus": 1})
    with pytest.raises(FedleakError, match=r"^scenario: model\.small_input: Extra inputs are not permitted"):
        tiny_scenario(model={"name": "torchvision:vgg11", "small_input": True})  # only ResNets have the option
    with pytest.raises(FedleakError, match=r"^scenario: model\.groups: Input should be a valid integer"):
        tiny_scenario(model={**RESNET, "groups": "many"})


def test_a_scenario_dumps_and_pickles_only_what_it_set():
    scenario = _colour_scenario(model={**RESNET, "zero_init_residual": True})
    assert scenario.model.as_table() == {"name": "torchvision:resnet18", "init": "default", "init_bound": 0.5,
                                         "zero_init_residual": True}
    assert "zero_init_residual = true" in scenario.to_toml()
    config = pickle.loads(pickle.dumps(scenario.model.config))  # by name: the class exists only at run time
    assert config == scenario.model.config and type(config) is type(scenario.model.config)


def test_preflight_runs_the_model_as_clients_train_it():
    with pytest.raises(FedleakError, match=r"resnet18 on 1×8×8 images: does not run: Expected more than 1 value "
                                           r"per channel when training"):
        check_runnable(tiny_scenario(model=RESNET))  # layer 4 sees 1×1 maps: BatchNorm on a batch of one
    check_runnable(tiny_scenario(model=RESNET, training={"batch_size": 2}))


def test_dp_sgd_with_batch_norm_is_rejected_up_front():
    scenario = _colour_scenario(defenses=[{"name": "dp-sgd"}])
    with pytest.raises(FedleakError, match=r"^defenses\[0\] \(dp-sgd\) with model torchvision:resnet18 on 3×32×32 "
                                           r"images: Opacus cannot train 20 layer\(s\) of this model \(its "
                                           r"per-sample-gradient validation\), the first bn1 \(BatchNorm2d\)") as error:
        check_runnable(scenario)
    assert "\n" not in str(error.value)


# --- a user's own model ------------------------------------------------------------------------


USER_MODELS = '''
from pydantic import BaseModel
from torch import nn

from fedleak.models import ModelConfig


class Net(nn.Module):
    """A CNN with BatchNorm and pooling: not a plain chain, no fully-connected first layer."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 8, dropout: float = 0.0,
                 activation=nn.ReLU):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden), activation(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(4 * hidden, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class Sized(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], num_classes: int = 3):
        super().__init__()
        self.image_shape = image_shape
        self.layer = nn.Linear(image_shape[0] * image_shape[1] * image_shape[2], num_classes)

    def forward(self, x):
        return self.layer(x.flatten(1))


class OwnConfig(ModelConfig):
    width: int = 4


class LooseConfig(BaseModel):
    width: int = 4


class Loose(nn.Module):
    Config = LooseConfig


class Own(nn.Module):
    Config = OwnConfig

    def __init__(self, config, image_shape, num_classes):
        super().__init__()
        self.layer = nn.Sequential(nn.Flatten(), nn.Linear(image_shape[0] * image_shape[1] * image_shape[2],
                                                           config.width), nn.ReLU(), nn.Linear(config.width, num_classes))

    def forward(self, x):
        return self.layer(x)


def function():
    pass


class Plain:
    pass
'''


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_models")
    (folder / f"{USER_MODULE}.py").write_text(textwrap.dedent(USER_MODELS))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield USER_MODULE


def test_a_user_model_is_configured_by_its_signature_and_sized_by_the_dataset(user_models):
    scenario = tiny_scenario(model={"name": f"{user_models}:Net", "hidden": 6}, training={"batch_size": 2})
    check_runnable(scenario)
    body = _spec(scenario).build().body
    assert (body.features[0].in_channels, body.features[0].out_channels, body.head.out_features) == (1, 6, 10)
    assert scenario.model.as_table() == {"name": f"{user_models}:Net", "init": "default", "init_bound": 0.5,
                                         "hidden": 6, "dropout": 0.0}  # a class default is "the constructor's"
    assert list(_spec(scenario).build().state_dict())[0] == "features.0.weight"
    assert pickle.loads(pickle.dumps(scenario.model.config)) == scenario.model.config
    sized = _spec(tiny_scenario(model={"name": f"{user_models}:Sized"})).build().body
    assert (sized.image_shape, sized.layer.out_features) == ((1, 8, 8), 10)  # filled although it has a default


@pytest.mark.parametrize(("model", "expected"), [
    ({"hidden": 4, "widht": 3}, "model.widht: Extra inputs are not permitted"),
    ({"hidden": "wide"}, "model.hidden: Input should be a valid integer"),
])
def test_a_user_models_keys_are_checked_against_its_signature(user_models, model, expected):
    with pytest.raises(FedleakError, match=rf"^scenario: {expected}"):
        tiny_scenario(model={"name": f"{user_models}:Net", **model})


def test_a_user_model_with_its_own_config_is_built_like_a_registered_one(user_models):
    scenario = tiny_scenario(model={"name": f"{user_models}:Own", "width": 5})
    check_runnable(scenario)
    assert _spec(scenario).build().body.layer[1].out_features == 5
    with pytest.raises(FedleakError, match=r"^scenario: model\.depth: Extra inputs are not permitted"):
        tiny_scenario(model={"name": f"{user_models}:Own", "depth": 2})


@pytest.mark.parametrize(("name", "expected"), [
    ("no_such_package.models:Net", "model.name: 'no_such_package.models:Net': cannot import no_such_package.models: "
                                   "ModuleNotFoundError: No module named 'no_such_package'"),
    (f"{USER_MODULE}:Missing", f"model.name: '{USER_MODULE}:Missing': {USER_MODULE} has no attribute 'Missing'"),
    (f"{USER_MODULE}:function", f"{USER_MODULE}.function is a function, not an nn.Module subclass"),
    (f"{USER_MODULE}:Plain", f"{USER_MODULE}.Plain is a type, not an nn.Module subclass"),
    ("torchvision:resnet19", "torchvision has no classification model 'resnet19' (did you mean resnet18"),
    (f"{USER_MODULE}:Loose", "its Config must subclass fedleak.models.ModelConfig"),
    ("a:b:c", "'a:b:c': expected MODULE:CLASS (e.g. my_pkg.models:Net) or torchvision:NAME"),
])
def test_a_bad_model_path_is_one_line_and_exit_2(monkeypatch, capsys, user_models, name, expected):
    monkeypatch.setattr(sys, "argv", ["fedleak", "run", QUICKSTART, "--set", f"model.name={name!r}"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err


# --- BatchNorm as clients train it -------------------------------------------------------------


def test_the_simulated_gradient_of_a_batch_norm_model_is_the_clients_train_mode_gradient():
    scenario = _colour_scenario(training={"batch_size": 3})
    update, spec = fedsgd_update(scenario)
    model = spec.with_weights(update.global_weights)
    batch = build_plan(scenario.seed, scenario.dataset, scenario.partition).batches(0, 1, scenario.training)[0]
    pool = load_dataset(scenario.dataset).train
    images, labels = pool.images[torch.as_tensor(batch)], pool.labels[torch.as_tensor(batch)]

    client = copy.deepcopy(model).train()  # what the client computes: train mode, on a copy
    F.cross_entropy(client(images), labels).backward()
    simulation = model.training_simulation()
    parameters = {name: p.detach() for name, p in simulation.parameters_by_name().items()}
    simulated = parameter_gradient(simulation, parameters, images, labels)
    observed = update.pseudo_gradient()
    for name, parameter in client.parameters_by_name().items():
        assert torch.allclose(simulated[name], parameter.grad, rtol=1e-4, atol=1e-6), name
        assert torch.allclose(simulated[name], observed[name], rtol=1e-3, atol=1e-5), name
    # the client's running statistics moved and travel in the update; the simulation touched none
    assert not torch.equal(update.client_weights["bn1.running_mean"], update.global_weights["bn1.running_mean"])
    assert int(update.client_weights["bn1.num_batches_tracked"]) == 1
    assert all(torch.equal(w, model.state_dict()[k]) for k, w in update.global_weights.items())


def test_attacks_leave_a_batch_norm_model_as_they_found_it():
    update, spec = fedsgd_update(_colour_scenario())
    model = spec.with_weights(update.global_weights).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for attack, config in (("inverting", {"iterations": 2, "restarts": 2}),  # two stacked problems: vmap
                           ("dlg", {"iterations": 1, "max_eval_per_step": 2})):
        recon = ATTACKS.get(attack)(ATTACKS.get(attack).Config(**config)).run(update, model, Budget())
        assert recon.images.shape == (1, 3, 32, 32)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("defenses", [[], [{"name": "local-dp", "std": 0.01}], [{"name": "top-k"}],
                                      [{"name": "random-k"}], [{"name": "prune"}], [{"name": "int8"}],
                                      [{"name": "fp16"}], [{"name": "bf16"}]])
def test_the_server_accepts_a_batch_norm_models_replies_under_every_defense(user_models, defenses):
    scenario = tiny_scenario(model={"name": f"{user_models}:Net"}, defenses=defenses)
    sent = _spec(scenario).build().state_dict()
    reply = local_round(scenario, 0, 1, scenario.training, sent)
    received = records.received_weights(records.reply_content(reply.arrays, reply.encoding, reply.metrics), sent)
    check_weights(received, sent)  # keys, shapes (a 0-d counter stays 0-d), dtypes (int64 stays int64)
    assert int(received["features.1.num_batches_tracked"]) == 1  # the counter passes the defenses untouched


# --- attacks that need another structure --------------------------------------------------------


@pytest.mark.parametrize("scenario", [
    pytest.param(lambda _: _colour_scenario(), id="resnet18"),
    pytest.param(lambda module: tiny_scenario(model={"name": f"{module}:Net"}, training={"batch_size": 2}),
                 id="user-cnn"),
])
@pytest.mark.parametrize(("attack", "reason"), [
    ("analytic", "analytic needs a first fully-connected layer with bias; this model starts with Conv2d"),
    ("linear", "linear: "),
    ("tensor", "tensor needs a one-hidden-layer MLP; this model has 1 linear layer(s) and "),
    ("kkt", "kkt needs a network whose output for a sample depends on that sample alone"),
])
def test_an_attack_needing_another_structure_is_not_applicable(user_models, scenario, attack, reason):
    update, spec = fedsgd_update(scenario(user_models))
    if attack == "linear":
        update = _one_image(update)
    outcome = execute(AttackJob(update, attack, ATTACKS.get(attack).Config(), spec))
    assert (outcome.status, outcome.error[:len(reason)]) == ("not applicable", reason), outcome.error


def _one_image(update: ClientUpdate) -> ClientUpdate:
    """The update as if of one image (linear checks the batch before the architecture)."""
    return replace(update, metadata=replace(update.metadata, batch_size=1, num_examples=1))


# --- a round through Flower --------------------------------------------------------------------


def _clients(scenario) -> ClientApp:
    app = ClientApp()

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        _register_colour()  # a Ray actor never imported this module: register its dataset there
        return train(message, context, scenario)

    return app


def test_resnet18_fedsgd_rounds_through_flower_are_attacked_stored_and_scored(tmp_path, captured):
    scenario = _colour_scenario(
        partition={"num_clients": 2}, federation={"rounds": 2, "test_samples": 16},
        capture={"rounds": [2], "clients": [0]},  # the model after FedAvg averaged its BatchNorm buffers
        attacks=[{"name": "inverting", "iterations": 3}, {"name": "analytic"}, {"name": "linear"}],
    )
    check_runnable(scenario)
    run_dir = new_run_dir(tmp_path, scenario.name)
    run_simulated(build_server_app(lambda _: (scenario, run_dir), Progress()), scenario, client_app=_clients(scenario))
    store = ResultStore.open_existing(run_dir)
    assert store.query("SELECT status, error FROM runs")[0] == {"status": "finished", "error": None}
    assert [r["round"] for r in store.query("SELECT round FROM rounds ORDER BY round")] == [0, 1, 2]
    updates = store.query("SELECT round, status FROM updates ORDER BY round, partition_id")
    assert [(u["round"], u["status"] or "accepted") for u in updates] == [(1, "accepted")] * 2 + [(2, "accepted")] * 2
    results = {r["attack"]: r for r in store.query("SELECT * FROM attack_results")}
    inverting = results["inverting"]
    assert inverting["status"] == "ok" and inverting["round"] == 2 and inverting["num_reconstructed"] == 1
    assert np.isfinite(inverting["psnr"]) and np.isfinite(inverting["ssim"])
    assert json.loads(inverting["extras"])["iterations"] == 3 and (run_dir / inverting["image"]).is_file()
    assert results["analytic"]["status"] == results["linear"]["status"] == "not applicable"
    assert results["linear"]["error"].startswith("linear: ")
    assert json.loads(store.query("SELECT audit FROM runs")[0]["audit"])["unsupported"]
    second = next(u for u in captured if u.server_round == 2).global_weights
    counter = second["layer1.0.bn1.num_batches_tracked"]  # FedAvg averaged it in float64: back in the model's dtype
    assert counter.dtype == torch.int64 and int(counter) == 1
    assert not torch.equal(second["bn1.running_mean"], captured[0].global_weights["bn1.running_mean"])


def test_image_classifier_state_dict_is_the_bodys():
    body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 3))
    model = ImageClassifier(body, (1, 5, 5), 3, [0.5], [0.5])
    assert list(model.state_dict()) == list(body.state_dict())
    assert list(model.parameters_by_name()) == [name for name, _ in body.named_parameters()]
