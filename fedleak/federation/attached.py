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
  metrics, else the train config the server sent that client (keys in
  :data:`~fedleak.federation.replies.METADATA_KEYS`).
  A value found nowhere takes a stated default and the update is stored with a warning
  (``updates.warning``); it never stops the run.
* **Replies the user's strategy could not aggregate are dropped before it sees them**, each
  stored with its reason: a client error, weights whose keys, shapes or dtypes are not the
  model's or that are not finite, no usable weighting metric (the strategy's ``weighted_by_key``,
  see :class:`~fedleak.federation.records.RecordKeys`), or metrics
  whose keys differ from the round's other replies (Flower's FedAvg refuses the whole round
  then). A round with nothing left is the user's strategy's to handle (FedAvg keeps the model).
* Clients are numbered in the order the server first sent to them (``partition_id`` in the
  results; ``capture.clients`` selects by it), by node id within a round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from torch import nn

from fedleak.adversary.adversary import Adversary
from fedleak.adversary.assembly import open_adversary
from fedleak.adversary.audit import stored_audit
from fedleak.adversary.progress import ConsoleProgress, Progress
from fedleak.core.config import AppConfig
from fedleak.core.errors import FedleakError, first_line
from fedleak.core.updates import ClientUpdate, Weights
from fedleak.federation.records import RecordKeys
from fedleak.federation.replies import AppReplies
from fedleak.federation.run import end_run
from fedleak.federation.strategy import AdversarialStrategy, DelegatingStrategy
from fedleak.models import ModelSpec
from fedleak.results.lock import DirectoryLock
from fedleak.results.rows import RejectedReply, RunStatus
from fedleak.results.store import ResultStore, check_out_dir, new_run_dir
from fedleak.scenario import Scenario, parse_scenario

_log = logging.getLogger(__name__)



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
    configrecord_key: str | None = None,
    weighted_by_key: str | None = None,
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
    configrecord_key, weighted_by_key : str, optional
        Where the strategy's messages keep the train config, and the reply metric it weights by, as
        Flower's FedAvg names them; by default the strategy's own (FedAvg and its subclasses have
        them) or, for a wrapper, the strategy it wraps (``.strategy``, as Flower's DP wrappers keep
        it); else Flower's default record name, and no weighting metric checked.
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
    keys = RecordKeys.of(strategy, configrecord_key, weighted_by_key)
    return AttachedStrategy(strategy, scenario, out_dir, progress or ConsoleProgress(), keys)


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

    def __init__(self, inner: Strategy, scenario: Scenario, out_dir: Path, progress: Progress,
                 keys: RecordKeys | None = None) -> None:
        if scenario.app is None:
            raise ValueError("an attached app's scenario needs its [app] section")
        super().__init__(inner)
        self.keys = keys or RecordKeys.of(inner)
        """Where the strategy's messages keep their records, and the metric it weights replies by."""
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
        capturing = CapturingStrategy(self.inner, adversary, AppReplies(run_dir.name, self.app, keys=self.keys),
                                      run_dir.name, num_rounds)
        try:
            result = capturing.start(grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config,
                                     evaluate_fn)
            adversary.runner.close(wait=self.scenario.runner.wait)
        except BaseException as failure:
            end_run(adversary, lock, run_dir.name, RunStatus.FAILED, f"{type(failure).__name__}: {first_line(failure)}")
            raise
        accepted = adversary.store.accepted_updates()
        end_run(adversary, lock, run_dir.name, RunStatus.FINISHED if accepted else RunStatus.FAILED,
                None if accepted else f"no reply was accepted in {num_rounds} rounds")
        return result

    def _open(self, run_dir: Path, initial: Weights) -> Adversary:
        store = ResultStore(run_dir)
        store.start_run(run_dir.name, self.scenario.name, self.scenario.to_toml())
        store.record_audit(run_dir.name, *stored_audit(self.spec.with_weights(initial), probe_seed=self.scenario.seed))
        _log.info("fedleak: capturing into %s", run_dir)
        return open_adversary(self.scenario, store, self.progress)


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
        self.reader.sent_to({m.metadata.dst_node_id: self.reader.sent_config(m.content) for m in messages})
        return messages

    def capture_round(self, server_round: int, replies: list[Message]
                      ) -> list[tuple[Message, ClientUpdate | RejectedReply]]:
        captured = super().capture_round(server_round, sorted(replies, key=lambda r: r.metadata.src_node_id))
        return self.reader.consistent(captured)

    def before_aggregate(self, server_round: int, accepted: int, rejected: list[RejectedReply],
                         replies: int) -> None:
        """Nothing: an empty round is the user's strategy's to handle."""
