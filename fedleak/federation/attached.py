"""fedleak inside a user's own Flower app: :func:`attach` puts the adversary around its strategy.

The user's ServerApp keeps its model (its own ``nn.Module`` and state-dict keys), its
strategy (FedAvg, FedProx, a DP wrapper, …) and its clients; attaching adds the capture.
What the server knows differs from a fedleak run, and so does the boundary:

* **No data plan.** The clients' data is theirs. Attacks run on every captured update;
  their reconstructions are stored whole and ``unscored``, unless a lab client reports the
  samples it trained on through fedleak's side channel (:mod:`fedleak.federation.lab`),
  which the server stores with the update and removes before the strategy sees the reply.
* **What the attacks need and a stock reply does not say** (learning rate, batch size,
  local steps) is read, per value, from :func:`attach`'s own arguments, else the reply's
  metrics, else the train config the server sent that client (keys in :data:`METADATA_KEYS`).
  A value found nowhere takes a stated default and the update is stored with a warning
  (``updates.warning``); it never stops the run.
* **Replies the user's strategy could not aggregate are dropped before it sees them**, each
  stored with its reason: a client error, weights whose keys, shapes or dtypes are not the
  model's or that are not finite, no weighting key (``num-examples`` for FedAvg), or metrics
  whose keys differ from the round's other replies (Flower's FedAvg refuses the whole round
  then). A round with nothing left is the user's strategy's to handle (FedAvg keeps the model).
* Clients are numbered in the order the server first sent to them (``partition_id`` in the
  results; ``capture.clients`` selects by it), by node id within a round.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from torch import nn

from fedleak.adversary import Adversary
from fedleak.adversary.audit import stored_audit
from fedleak.adversary.evaluation import ReportedTruth
from fedleak.adversary.progress import ConsoleProgress, Progress
from fedleak.core import wire
from fedleak.core.config import AppConfig
from fedleak.core.errors import FedleakError, first_line
from fedleak.core.updates import ClientUpdate, RejectedReply, ReportedSamples, UpdateMetadata, Weights
from fedleak.federation.replies import InvalidReply, check_weights
from fedleak.federation.run import end_run
from fedleak.federation.strategy import AdversarialStrategy, DelegatingStrategy
from fedleak.models import ModelSpec
from fedleak.results.lock import DirectoryLock
from fedleak.results.store import ResultStore, check_out_dir, new_run_dir
from fedleak.runners import RUNNERS
from fedleak.scenario import Scenario, parse_scenario

_log = logging.getLogger(__name__)

METADATA_KEYS: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning-rate", "learning_rate"),
    "batch_size": ("batch-size", "batch_size"),
    "local_steps": ("local-steps", "local_steps"),
    "local_epochs": ("local-epochs", "local_epochs", "epochs"),
    "num_examples": ("num-examples", "num_examples"),
}
"""The keys each training value is read under, in a reply's metrics and in the train config sent."""


def attach(
    strategy: Strategy,
    *,
    model: type[nn.Module] | str,
    image_shape: Sequence[int],
    num_classes: int,
    store: str | Path = "runs",
    attacks: Sequence[str | Mapping[str, Any]] = ("idlg",),
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    name: str = "app",
    model_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> AttachedStrategy:
    """``strategy`` with fedleak's adversary around it: every training reply captured,
    attacked and stored in a new run directory under ``store`` each time it starts.

    Parameters
    ----------
    strategy : Strategy
        The app's own strategy; it aggregates exactly the replies it would, less those it
        could not aggregate (module docstring).
    model : type[nn.Module] | str
        The app's model class, or ``"package.module:Class"``; built with its constructor's
        defaults and ``model_options``, its state dict must have the keys and shapes the
        strategy sends (checked when it starts). It must live in an importable module.
    image_shape, num_classes : Sequence[int], int
        The clients' images (C, H, W) and the model's classes.
    store : str | Path
        The folder run directories are made in (``fedleak results`` reads them).
    attacks : Sequence[str | Mapping[str, Any]]
        Attack names, or tables with ``name`` and the attack's settings (as in a scenario).
    mean, std : Sequence[float]
        The normalisation the clients apply to [0, 1] images (none by default).
    name : str
        The run's name (the run directory's prefix).
    model_options : Mapping[str, Any], optional
        Constructor arguments of ``model``.
    progress : Progress, optional
        Where rounds and attacks are reported (default: a line each on stderr).
    **settings
        The client training the server assumes where replies and its train config are silent
        (``lr``, ``batch_size``, ``local_epochs``, ``local_steps``), and scenario sections
        (``seed``, ``capture``, ``threat``, ``runner``, ``save_images``, ``import``).

    Returns
    -------
    AttachedStrategy
        The strategy to ``start`` instead of ``strategy``.

    Raises
    ------
    FedleakError
        One line naming the first bad argument; nothing is created.
    """
    training = {key: settings.pop(key) for key in ("lr", "batch_size", "local_epochs", "local_steps")
                if key in settings}
    table: dict[str, Any] = {
        "name": name, **settings,
        "model": {"name": _model_name(model), **(model_options or {})},
        "attacks": [{"name": a} if isinstance(a, str) else dict(a) for a in attacks],
        "app": {"image_shape": list(image_shape), "num_classes": num_classes, "mean": list(mean),
                "std": list(std), **training},
    }
    scenario = parse_scenario(table, source="fedleak.attach")
    out_dir = Path(store).absolute()
    check_out_dir(out_dir)
    return AttachedStrategy(strategy, scenario, out_dir, progress or ConsoleProgress())


def _model_name(model: type[nn.Module] | str) -> str:
    if isinstance(model, str):
        return model
    if not (isinstance(model, type) and issubclass(model, nn.Module)):
        raise FedleakError(f"fedleak.attach: model must be an nn.Module class or 'module:Class', "
                           f"got {type(model).__name__}")
    if model.__module__ == "__main__" or "<locals>" in model.__qualname__:
        raise FedleakError(f"fedleak.attach: model {model.__qualname__} must be defined at the top of an importable "
                           "module (attack workers rebuild it by name)")
    return f"{model.__module__}:{model.__qualname__}"


class AttachedStrategy(DelegatingStrategy):
    """The user's strategy; while :meth:`start` runs, every reply is captured first.

    Called outside :meth:`start` (as Flower's own loop never does), it is the user's strategy unchanged.
    """

    def __init__(self, inner: Strategy, scenario: Scenario, out_dir: Path, progress: Progress) -> None:
        if scenario.app is None:
            raise ValueError("an attached app's scenario needs its [app] section")
        super().__init__(inner)
        self.scenario = scenario
        self.app: AppConfig = scenario.app
        self.spec: ModelSpec = scenario.app_model_spec()
        self.out_dir = out_dir
        self.progress = progress
        self.run_dir: Path | None = None
        """The run directory of the last :meth:`start`."""

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        """Flower's round loop with the capture on; the run directory is made here and ends
        ``finished`` (some reply was accepted), ``failed`` (none was, or the loop raised: re-raised).

        Raises:
            FedleakError: the model's state dict is not what the strategy sends (before anything is made).
        """
        initial = dict(initial_arrays.to_torch_state_dict())
        check_model(self.spec, initial)
        run_dir = new_run_dir(self.out_dir, self.scenario.name)
        self.run_dir = run_dir
        lock = DirectoryLock(run_dir, "another process writes this run").acquire()
        adversary = self._open(run_dir, initial)
        capturing = CapturingStrategy(self.inner, adversary, AppReplies(run_dir.name, self.app),
                                      run_dir.name, num_rounds)
        try:
            result = capturing.start(grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config,
                                     evaluate_fn)
            adversary.runner.close(wait=self.scenario.runner.wait)
        except BaseException as failure:
            end_run(adversary, lock, run_dir.name, "failed", f"{type(failure).__name__}: {first_line(failure)}")
            raise
        accepted = adversary.store.query("SELECT COUNT(*) AS n FROM updates WHERE status = 'accepted'")[0]["n"]
        end_run(adversary, lock, run_dir.name, "finished" if accepted else "failed",
                None if accepted else f"no reply was accepted in {num_rounds} rounds")
        return result

    def _open(self, run_dir: Path, initial: Weights) -> Adversary:
        store = ResultStore(run_dir)
        store.start_run(run_dir.name, self.scenario.name, self.scenario.to_toml())
        store.record_audit(run_dir.name, *stored_audit(self.spec.with_weights(initial), probe_seed=self.scenario.seed))
        runner = RUNNERS.get(self.scenario.runner.name)(self.scenario.runner)
        _log.info("fedleak: capturing into %s", run_dir)
        return Adversary(self.scenario, self.spec, ReportedTruth(), store, runner, self.progress)


def check_model(spec: ModelSpec, sent: Weights) -> None:
    """The model fedleak rebuilds has the state dict the strategy sends (keys, shapes).

    Raises:
        FedleakError: one line naming the first difference.
    """
    try:
        own = spec.build().state_dict()
    except FedleakError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's constructor: any failure is one line
        raise FedleakError(f"fedleak.attach: cannot build {spec.name}: {type(error).__name__}: "
                           f"{first_line(error)}") from None
    sends, builds = set(sent) - set(own), set(own) - set(sent)
    if sends or builds:
        key = min(sends or builds)
        raise FedleakError(f"fedleak.attach: {spec.name} does not match the arrays the strategy sends: "
                           + (f"they hold '{key}', the model has no such tensor" if sends else
                              f"the model's '{key}' is not among them") + f" ({len(sent)} sent, {len(own)} built)")
    for key, weight in sent.items():
        if tuple(own[key].shape) != tuple(weight.shape):
            raise FedleakError(f"fedleak.attach: {spec.name} does not match the arrays the strategy sends: "
                               f"'{key}' is {tuple(weight.shape)} there, {tuple(own[key].shape)} in the model")


class CapturingStrategy(AdversarialStrategy):
    """The adversarial strategy at an attached app's boundary: configs remembered per node,
    replies the inner strategy could not aggregate dropped, the user's RNG left alone."""

    reader: AppReplies

    def configure_train(self, flower_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(super().configure_train(flower_round, arrays, config, grid))
        self.reader.sent_to({m.metadata.dst_node_id: _first_config(m.content) for m in messages})
        return messages

    def capture_round(self, server_round: int, replies: list[Message]
                      ) -> list[tuple[Message, ClientUpdate | RejectedReply]]:
        captured = super().capture_round(server_round, sorted(replies, key=lambda r: r.metadata.src_node_id))
        return self.reader.consistent(captured, _weighting_key(self.inner))

    def before_aggregate(self, server_round: int, accepted: int, rejected: list[RejectedReply],
                         replies: int) -> None:
        """Nothing: an empty round is the user's strategy's to handle."""


def _first_config(content: RecordDict) -> Mapping[str, Any]:
    return next(iter(content.config_records.values()), ConfigRecord())


def _weighting_key(strategy: Strategy) -> str | None:
    """The metric a strategy weights replies by (FedAvg's ``weighted_by_key``), through wrappers."""
    found: Any = strategy
    for _ in range(8):  # DP wrappers keep the strategy they wrap as .strategy
        key = getattr(found, "weighted_by_key", None)
        if isinstance(key, str):
            return key
        found = getattr(found, "strategy", None)
    return None


class AppReplies:
    """Reads an attached app's replies (the :class:`~fedleak.federation.strategy.ReplyReader` for it)."""

    def __init__(self, run_id: str, app: AppConfig, first_client: int = 0,
                 config: Mapping[str, Any] | None = None) -> None:
        self.run_id = run_id
        self.app = app
        self.first_client = first_client
        """The number of the first client seen (fedleak's own run numbers stock clients after its partitions)."""
        self.config: Mapping[str, Any] = config or {}
        """The train config sent to a node :meth:`sent_to` did not name (one config for every node)."""
        self._clients: dict[int, int] = {}
        self._configs: dict[int, Mapping[str, Any]] = {}

    def sent_to(self, configs: dict[int, Mapping[str, Any]]) -> None:
        """The train config each node was sent this round; new nodes are numbered in node-id order."""
        self._configs = configs
        for node_id in sorted(configs):
            self.client(node_id)

    def client(self, node_id: int) -> int:
        """The node's client number (the next free one, the first time it is seen)."""
        return self._clients.setdefault(node_id, self.first_client + len(self._clients))

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply:
        """The update a reply stands for (the lab samples taken out of it), or why it is rejected."""
        reported, warnings = _reported_samples(content, self.app)
        client = self.client(node_id)
        try:
            weights = _weights(content, sent)
            metrics = _metrics(content)
            metadata = self.metadata(node_id, metrics, reported, warnings)
        except InvalidReply as problem:
            return RejectedReply(self.run_id, server_round, node_id, client, "rejected", str(problem))
        return ClientUpdate(self.run_id, server_round, node_id, client, sent, weights, metadata,
                            warnings=tuple(warnings), reported=reported)

    def metadata(self, node_id: int, metrics: Mapping[str, Any], reported: ReportedSamples | None,
                 warnings: list[str]) -> UpdateMetadata:
        """The client's training as far as it can be known (module docstring); ``warnings`` gets what is assumed."""
        own = self.app.model_dump(include={"lr", "batch_size", "local_epochs", "local_steps"}, exclude_none=True)
        sources = [("fedleak.attach", {METADATA_KEYS[k][0]: v for k, v in own.items()}), ("the reply", metrics),
                   ("the train config sent", self._configs.get(node_id, self.config))]
        found = {name: _declared(name, sources, warnings) for name in METADATA_KEYS}
        examples = found["num_examples"] or (len(reported.labels) if reported is not None else None)
        if examples is None:
            examples = 1
            warnings.append("num-examples unknown: taken as 1")
        lr = found["lr"]
        if lr is None:
            lr = 1.0
            warnings.append("lr unknown (not given to fedleak.attach, in the reply or in the train config sent): "
                            "taken as 1, so gradients are known only up to scale")
        batch = found["batch_size"]
        if batch is None:
            batch = examples
            warnings.append(f"batch size unknown: taken as the {examples} examples trained on (one batch)")
        steps = found["local_steps"]
        if steps is None:
            epochs = found["local_epochs"]
            if epochs is None:
                epochs = 1
                warnings.append("local epochs unknown: taken as 1")
            steps = int(epochs) * math.ceil(examples / batch)
        algorithm = "fedsgd" if steps == 1 and batch >= examples else "fedavg"
        return UpdateMetadata(algorithm, float(lr), int(steps), int(batch), int(examples))

    def consistent(self, captured: list[tuple[Message, ClientUpdate | RejectedReply]], weighting_key: str | None
                   ) -> list[tuple[Message, ClientUpdate | RejectedReply]]:
        """Reject accepted replies the inner strategy could not aggregate with the others: no
        weighting key, or other metric keys than most of the round's replies."""
        metrics = {id(reply): _metrics(reply.content) for reply, outcome in captured
                   if isinstance(outcome, ClientUpdate)}
        keys = {reply: frozenset(record) for reply, record in metrics.items()}
        common = Counter(keys.values()).most_common(1)[0][0] if keys else frozenset()
        checked: list[tuple[Message, ClientUpdate | RejectedReply]] = []
        for reply, outcome in captured:
            if isinstance(outcome, ClientUpdate):
                problem = _unaggregatable(metrics[id(reply)], keys[id(reply)], common, weighting_key)
                if problem:
                    outcome = RejectedReply(self.run_id, outcome.server_round, outcome.node_id, outcome.partition_id,
                                            "rejected", problem)
            checked.append((reply, outcome))
        return checked


def _unaggregatable(metrics: Mapping[str, Any], keys: frozenset[str], common: frozenset[str],
                    weighting_key: str | None) -> str | None:
    if weighting_key is not None:
        value = metrics.get(weighting_key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            return f"no usable '{weighting_key}' in its metrics (the strategy weights replies by it)"
    if keys != common:
        differ = sorted(keys ^ common)
        return (f"its metrics differ from the round's other replies in {', '.join(differ[:3])} "
                "(the strategy aggregates only replies with the same metrics)")
    return None


def _weights(content: RecordDict, sent: Weights) -> Weights:
    """The reply's one ArrayRecord as the model's weights: its keys, shapes and dtypes, finite."""
    if len(content.array_records) != 1:
        raise InvalidReply(f"expected one ArrayRecord of weights, got {len(content.array_records)}")
    record = next(iter(content.array_records.values()))
    try:
        weights = {k: torch.from_numpy(np.array(a.numpy())) for k, a in record.items()}
    except Exception as error:  # noqa: BLE001 - whatever a malformed array makes the decoder raise
        raise InvalidReply(f"cannot decode its arrays: {type(error).__name__}: {first_line(error)}") from None
    check_weights(weights, sent)
    return weights


def _metrics(content: RecordDict) -> Mapping[str, Any]:
    """The reply's one MetricRecord (none: empty; more than one: rejected, as FedAvg would fail on it)."""
    records = list(content.metric_records.values())
    if len(records) > 1:
        raise InvalidReply(f"expected one MetricRecord, got {len(records)}")
    return records[0] if records else {}


def _declared(name: str, sources: list[tuple[str, Mapping[str, Any]]], warnings: list[str]) -> float | None:
    """The first valid value of ``name`` in ``sources``; an invalid one is a warning and skipped."""
    integer = name != "lr"
    for where, record in sources:
        for key in METADATA_KEYS[name]:
            if key not in record:
                continue
            value = record[key]
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and math.isfinite(value) and value > 0 and (not integer or float(value).is_integer()):
                return value  # type: ignore[no-any-return]
            warnings.append(f"{key} {str(value)[:20]!r} in {where} is not a positive "
                            f"{'whole number' if integer else 'number'}: ignored")
    return None


def _reported_samples(content: RecordDict, app: AppConfig) -> tuple[ReportedSamples | None, list[str]]:
    """Take the lab side channel out of ``content`` (the inner strategy never sees it); its
    samples, or why they are ignored (a warning: the update itself stays valid)."""
    if wire.TRUTH not in content:
        return None, []
    record = content[wire.TRUTH]
    del content[wire.TRUTH]
    try:
        if not isinstance(record, ArrayRecord):
            raise ValueError(f"a {type(record).__name__}, not an ArrayRecord")
        images = torch.from_numpy(np.array(record[wire.TRUTH_IMAGES].numpy())).float()
        labels = torch.from_numpy(np.array(record[wire.TRUTH_LABELS].numpy())).long()
    except Exception as error:  # noqa: BLE001 - a malformed side channel is a warning, not a crash
        return None, [f"{wire.TRUTH} ignored: {type(error).__name__}: {first_line(error)}"]
    problem = _samples_problem(images, labels, app)
    if problem:
        return None, [f"{wire.TRUTH} ignored: {problem}"]
    return ReportedSamples(images, labels), []


def _samples_problem(images: torch.Tensor, labels: torch.Tensor, app: AppConfig) -> str | None:
    if images.ndim != 4 or tuple(images.shape[1:]) != app.image_shape:
        return f"images of shape {tuple(images.shape)}, the model reads (N, {', '.join(map(str, app.image_shape))})"
    if labels.shape != (len(images),):
        return f"{len(labels)} labels for {len(images)} images"
    if not bool(torch.isfinite(images).all()) or images.min() < -1e-4 or images.max() > 1 + 1e-4:
        return "images outside [0, 1] (were they reported before normalisation, with its mean and std?)"
    if len(labels) and (labels.min() < 0 or labels.max() >= app.num_classes):
        return f"labels outside 0..{app.num_classes - 1}"
    return None
