"""``fedleak …``: run scenarios and read their results.

User errors end with one line on stderr naming the problem, and exit code 2, before
anything starts: ``fedleak run`` validates the scenario and checks it against its data
(:mod:`fedleak.scenario.preflight`) before it imports Flower or Ray. A run that fails (e.g. no
client reply accepted in a round) ends with one line and exit code 1.
"""

from __future__ import annotations

import atexit
import gc
import json
import sqlite3
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fedleak.core.errors import FedleakError, RunFailed, first_line
from fedleak.core.timing import PHASES
from fedleak.results.rows import AttackStatus, ReplyStatus, RunStatus

if TYPE_CHECKING:
    from fedleak.results.compare import Comparison
    from fedleak.results.store import ResultStore
    from fedleak.results.summary import SanityVerdictCount
    from fedleak.scenario import Scenario

_STARTED = time.perf_counter()
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Federated learning with an adversarial server that reconstructs client data.")
# Rich falls back to 80 columns when piped; the results and comparison tables need more.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a key: --set training.lr=0.5")] = [],  # noqa: B006
    out: Annotated[Path, typer.Option(help="Parent folder of the run directory.")] = Path("runs"),
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's logs, and where the time went.")] = False,
    wait: Annotated[bool | None, typer.Option(
        help="At the end, finish every attack (--wait) or cancel the rest (--no-wait); default: runner.wait.")] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="Run the clients on this running Ray cluster (auto, HOST:PORT, ray://HOST:PORT) instead of a "
             "new local Ray.")] = None,
) -> None:
    """Run a scenario as a Flower simulation; store everything in a new run directory."""
    from fedleak.scenario import load_scenario

    if ray_address is not None:
        from fedleak.runners.ray_config import check_reachable, cluster_address  # torch: only with an address

        try:
            cluster_address(ray_address)
        except ValueError as error:
            raise FedleakError(f"--ray-address: {error}") from None

    with PHASES.measure("validation (scenario, data, model)"):
        from fedleak.results.store import check_out_dir, new_run_dir

        check_out_dir(out)
        resolved = load_scenario(scenario, [*set_, *([f"runner.wait={str(wait).lower()}"] if wait is not None else [])])
        from fedleak.scenario.preflight import check_runnable  # torch: once the scenario's sections hold

        check_runnable(resolved)
        if ray_address is not None:
            check_reachable(ray_address)  # after the scenario's checks: nothing listening is one line too
        run_dir = new_run_dir(out, resolved.name)

    console.print(f"fedleak: running [bold]{resolved.name}[/] → {run_dir}")
    _simulate(resolved, run_dir, verbose, ray_address=ray_address)


def _simulate(scenario: Scenario, run_dir: Path, verbose: bool, resume: bool = False,
              ray_address: str | None = None) -> None:
    """Run (or resume) ``scenario`` in ``run_dir``, Ctrl-C and SIGTERM handled
    (:mod:`fedleak.federation.interrupts`); then its table, and exit 1 unless it finished."""
    with PHASES.measure("imports (Flower, Ray, the server)"):
        from fedleak.adversary.progress import ConsoleProgress
        from fedleak.federation import interrupts, simulate  # Flower and Ray: only for a scenario that will run

    interrupts.install()
    simulate(scenario, run_dir, ConsoleProgress(), verbose=verbose, resume=resume, ray_address=ray_address)
    interrupts.hold_if_stopping()  # a stop's watchdog ends the process (exit 130)
    if not (run_dir / "results.sqlite").is_file():
        raise RunFailed("the server stopped before storing anything (run with --verbose to see why)")
    results(run_dir)
    if verbose:
        _print_phases()
    _raise_if_failed(run_dir)


def _print_phases() -> None:
    """Where this command's time went (:mod:`fedleak.core.timing`), and the wall time since it started."""
    table = Table("phase", "s", "spans", title="where the time went (nested: attacks run inside rounds)",
                  title_justify="left")
    for phase in PHASES.phases():
        table.add_row(phase.name, f"{phase.seconds:.2f}", str(phase.count))
    table.add_row("[bold]since fedleak's CLI was loaded[/]", f"{time.perf_counter() - _STARTED:.2f}", "")
    console.print(table)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run directory of an interrupted run.")],
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's logs.")] = False,
) -> None:
    """Continue an interrupted run (Ctrl-C, SIGTERM, or its process killed) after its last completed
    round, in the same run directory: same clients, batches and seeds as if it had never stopped."""
    from fedleak.results.checkpoint import checkpoint_round
    from fedleak.results.lock import shown_status
    from fedleak.results.store import ResultStore
    from fedleak.scenario import load_scenario

    store = ResultStore.open_existing(run_dir)  # a wrong path refused at once, before torch is imported
    try:
        run = store.run_row()
    finally:
        store.close()
    status = shown_status(run_dir, run["status"]) if run else None
    if status != RunStatus.INTERRUPTED:
        reasons: dict[str | None, str] = {RunStatus.RUNNING: "it is still running (another fedleak process holds it)",
                                          RunStatus.FINISHED: "it has finished: nothing to resume",
                                          None: "it stored no run"}
        why = reasons.get(status, f"it {status} ({run['error'] if run else ''}): run its scenario.toml again")
        raise FedleakError(f"{run_dir}: cannot resume: {why}")
    scenario = load_scenario(run_dir / "scenario.toml")
    if scenario.defense_pipeline().legacy_path:
        raise FedleakError(f"{run_dir}: cannot resume: runs with SecAgg+ (Flower's legacy path) cannot be "
                           "resumed; run its scenario.toml again")
    from fedleak.scenario.preflight import check_runnable  # torch: once the run directory can be resumed

    check_runnable(scenario)
    last = checkpoint_round(run_dir) or 0
    console.print(f"fedleak: resuming [bold]{scenario.name}[/] after round {last} of "
                  f"{scenario.federation.rounds} → {run_dir}")
    if scenario.federation.fraction_train < 1:
        console.print("[yellow]note[/]: federation.fraction_train < 1: Flower samples each round's clients "
                      "afresh, so later rounds may train other clients than the interrupted run would have")
    _simulate(scenario, run_dir, verbose, resume=True)


@app.command()
def attack(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with captured updates (captures/).")],
    attack_name: Annotated[str, typer.Option("--attack", help="Registered attack name (e.g. inverting, idlg).")],
    set_: Annotated[list[str], typer.Option("--set", help="Override an attack key: --set iterations=8000")] = [],  # noqa: B006
    server_round: Annotated[list[int], typer.Option("--round", help="Only this round (repeatable).")] = [],  # noqa: B006
    client: Annotated[list[int], typer.Option("--client", help="Only this partition id (repeatable).")] = [],  # noqa: B006
    runner: Annotated[str, typer.Option(help="Where the attacks run: inline (this process) or ray.")] = "inline",
) -> None:
    """Attack a stored run's captured updates again, without running the federation: the results
    are stored beside the run's own, labelled with the --set overrides (re-running the same
    settings replaces their earlier rows). Starts from the scenario's settings for that attack."""
    from fedleak.adversary.progress import ConsoleProgress
    from fedleak.adversary.reattack import Selection, plan_reattack, run_reattack

    plan = plan_reattack(run_dir, attack_name, set_, Selection(set(server_round) or None, set(client) or None),
                         runner)  # every check, read-only: a refused command changes nothing and prints one line
    console.print(f"fedleak: attacking the captures of {run_dir} with [bold]{attack_name}[/]")
    summary = run_reattack(plan, ConsoleProgress())
    console.print(f"attacked {summary.updates} stored updates as '{attack_name} [{summary.variant}]' (read "
                  f"{_megabytes(summary.bytes_read)} of captures)"
                  + (f"; replaced {summary.replaced} earlier results of the same settings" if summary.replaced
                     else ""), markup=False)
    results(run_dir)


def _raise_if_failed(run_dir: Path) -> None:
    from fedleak.results.lock import shown_status
    from fedleak.results.store import ResultStore

    store = ResultStore.open_existing(run_dir)
    try:
        run = store.run_row()
    finally:
        store.close()
    if run is not None and run["status"] != RunStatus.FINISHED:
        raise RunFailed(f"run {shown_status(run_dir, run['status'])}: {run['error'] or 'no reason stored'}")


@app.command()
def results(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Print the per-round table of a run (read-only: the run directory is not changed)."""
    from fedleak.results.collection import SWEEP_FILE
    from fedleak.results.store import ResultStore

    if (run_dir / SWEEP_FILE).is_file():
        raise FedleakError(f"{run_dir} is a sweep directory: 'fedleak compare {run_dir}' shows its arms")
    store = ResultStore.open_existing(run_dir)
    try:
        for run_row in store.runs():
            _print_run(store, run_dir, run_row)
    except sqlite3.Error as error:  # a database with fedleak's tables but not its columns
        raise FedleakError(f"{run_dir}: not a fedleak results database ({error})") from None
    finally:
        store.close()


def _print_sanity(verdicts: list[SanityVerdictCount]) -> None:
    """The sanity checks' verdicts of a lab run's updates, and an example of each that is not consistent."""
    if not verdicts:
        return
    console.print("sanity checks: " + ", ".join(f"{v.count} {v.verdict}" for v in verdicts), markup=False)
    for verdict in verdicts:
        if verdict.verdict != "consistent":
            console.print(f"  e.g. round {verdict.round}, client {verdict.client}: {verdict.first}", markup=False)


def _print_run(store: ResultStore, run_dir: Path, run_row: dict[str, Any]) -> None:
    from fedleak.results import round_table
    from fedleak.results.captures import CaptureStore
    from fedleak.results.checkpoint import checkpoint_round
    from fedleak.results.lock import shown_status
    from fedleak.results.summary import run_summary

    console.print(round_table(store, run_row["run_id"]))
    risk = "not auditable" if run_row["risk_index"] is None else f"{run_row['risk_index']:.3f}"
    summary = run_summary(store, run_row["run_id"])
    replies, attacks = summary.replies, summary.attacks
    console.print(f"client replies: {replies[ReplyStatus.ACCEPTED]} accepted, {replies[ReplyStatus.REJECTED]} "
                  f"rejected, {replies[ReplyStatus.FAILED]} failed")
    if summary.warned:
        console.print(f"  {summary.warned} accepted with warnings, e.g.: {summary.first_warning}", markup=False)
    _print_sanity(summary.sanity)
    unscored = (f"{attacks[AttackStatus.UNSCORED]} unscored (no ground truth: stored whole in reconstructions/), "
                if attacks[AttackStatus.UNSCORED] else "")
    console.print(f"attacks: {attacks[AttackStatus.OK]} finished, {unscored}{attacks[AttackStatus.FAILED]} failed, "
                  f"{attacks[AttackStatus.NOT_APPLICABLE]} not applicable, {attacks[AttackStatus.CANCELLED]} "
                  "cancelled at the end of the run")
    captures = CaptureStore(run_dir)
    files, size = captures.size_bytes()
    updates = captures.count_updates()
    per_update = f", {_megabytes(size // updates)} per update" if updates else ""
    console.print(f"captured updates on disk: {files} round files, {updates} updates, {_megabytes(size)}"
                  f"{per_update} ({run_dir / 'captures'})", markup=False)
    status = shown_status(run_dir, run_row["status"])
    error = run_row["error"]
    if status == RunStatus.INTERRUPTED and run_row["status"] == RunStatus.RUNNING:
        rounds = tomllib.loads((run_dir / "scenario.toml").read_text()).get("federation", {}).get("rounds", "?")
        error = f"its process died after round {checkpoint_round(run_dir) or 0} of {rounds}"
    if status == RunStatus.INTERRUPTED:
        error = f"{error}; 'fedleak resume {run_dir}' continues it"
    console.print(f"status: {status}{f' ({error})' if error else ''} · model risk index: {risk} (fedleak audit; "
                  f"0 = fully recoverable) · images: {run_dir / 'images'}", markup=False)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep TOML file (a base scenario and its arms).")],
    out: Annotated[Path, typer.Option(help="Parent folder of the sweep directory: <out>/<name>.")] = Path("runs"),
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Arms run at a time (each with its CPU share).")] = 1,
    set_: Annotated[list[str], typer.Option("--set", help="Override a key in every arm.")] = [],  # noqa: B006
) -> None:
    """Run every arm of a sweep on the same clients and batches; re-running resumes it."""
    from fedleak.results.store import check_out_dir
    from fedleak.sweep import SweepRunner, load_sweep
    from fedleak.sweep.progress import SKIPPED, SweepView

    resolved = load_sweep(sweep_file, set_)
    check_out_dir(out)
    from fedleak.scenario.preflight import check_runnable  # torch: once the sweep file holds

    for arm, scenario in resolved.arms.items():
        try:
            check_runnable(scenario)
        except FedleakError as error:
            raise FedleakError(f"{sweep_file}: arm '{arm}': {error}") from None
    sweep_dir = out / resolved.name
    try:
        outcome = SweepRunner(resolved, sweep_dir, parallel, SweepView()).run()
    except KeyboardInterrupt:
        print(f"interrupted: finished arms are kept in {sweep_dir}; run the same command to resume", file=sys.stderr)
        sys.exit(130)
    from fedleak.results.compare import compare as compare_runs

    try:
        _print_comparison(compare_runs([sweep_dir]))
    except FedleakError as error:  # no arm stored anything: the failures below say why
        console.print(f"nothing to compare: {error}", markup=False)
    failed = [arm for arm, status in outcome.items() if status not in (RunStatus.FINISHED, SKIPPED)]
    if failed:
        raise RunFailed(f"{len(failed)} of {len(outcome)} arms did not finish ({', '.join(failed)}); "
                        f"their logs: {sweep_dir}/<arm>/log.txt; run the same command to retry them")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="A sweep directory, or run directories.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="Print the per-round rows as CSV.")] = False,
    every_round: Annotated[bool, typer.Option(help="Show rounds without attacks too (JSON, CSV: always).")] = False,
) -> None:
    """Compare runs round by round: accuracy, ε and each attack's scores, and which arms defend."""
    from fedleak.results.compare import compare as compare_runs
    from fedleak.results.tables import comparison_csv

    if json_ and csv_:
        raise FedleakError("--json and --csv: choose one")
    comparison = compare_runs(runs)
    if json_:
        print(json.dumps(comparison.as_json(), indent=1))
    elif csv_:
        print(comparison_csv(comparison), end="")
    else:
        _print_comparison(comparison, every_round)


def _print_comparison(comparison: Comparison, every_round: bool = False) -> None:
    from fedleak.results.tables import comparison_tables

    if not comparison.paired:
        console.print(f"[bold yellow]unpaired[/]: {comparison.unpaired_reason}; the arms did not train on the "
                      "same clients, batches and initial model")
    for table in comparison_tables(comparison, every_round):
        console.print(table)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="A sweep directory, or run directories.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file to write "
                                                "(default: report.html in the first directory).")] = None,
) -> None:
    """Write one self-contained HTML report: leakage and accuracy per round, privacy–utility, images."""
    from fedleak.results.compare import compare as compare_runs
    from fedleak.results.report import write_report

    comparison = compare_runs(runs)
    path = write_report(comparison, output or runs[0] / "report.html")
    console.print(f"fedleak: report of {len(comparison.runs)} run(s) → {path}")


@app.command()
def audit(
    model: Annotated[str, typer.Argument(help="Registered model name (e.g. rgap_cnn, lenet).")],
    input_shape: Annotated[str, typer.Option(help="Image shape C,H,W.")] = "1,28,28",
    num_classes: Annotated[int, typer.Option(help="Number of classes.")] = 10,
    set_: Annotated[list[str], typer.Option("--set", help="Override a model key: --set channels=[3,36]")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="Seed of the model's initial weights (and of the random probe).")] = 0,
) -> None:
    """Per-layer rank analysis and the leakage risk index of an architecture (no client data).

    The normaliser uses mean 0.5 and std 0.5 per channel; the ranks do not depend on it.
    """
    from fedleak.core.config import MAX_SEED

    shape = _image_shape(input_shape)
    if num_classes < 2:
        raise FedleakError(f"--num-classes: expected at least 2, got {num_classes}")
    if not 0 <= seed <= MAX_SEED:  # a scenario's seed bound: numpy's seed sequences take no negatives
        raise FedleakError(f"--seed: expected 0 to {MAX_SEED} (as a scenario's seed), got {seed}")
    from pydantic import ValidationError

    from fedleak.adversary.audit import audit_model, audit_table, check_auditable
    from fedleak.attacks.linear_systems import UnsupportedArchitecture
    from fedleak.models import MODELS, ModelSpec
    from fedleak.scenario import apply_override, first_error

    table: dict = {}
    for override in set_:
        apply_override(table, override)
    try:
        config = MODELS.get(model).Config.model_validate(table)
    except ValidationError as error:
        raise FedleakError(f"--set {first_error(error)}") from None
    spec = ModelSpec(model, config, shape, num_classes, (0.5,) * shape[0], (0.5,) * shape[0])
    try:
        check_auditable(spec, seed)
        result = audit_model(spec.build(seed=seed), probe_seed=seed)
    except UnsupportedArchitecture as error:
        raise FedleakError(f"audit: {model}: {error}") from None
    except RuntimeError as error:  # e.g. an input too small for the model's kernels
        raise FedleakError(f"audit: {model} does not run on {input_shape}: {first_line(error)}") from None
    console.print(audit_table(result, title=f"{model} on {'×'.join(map(str, shape))}"))
    console.print(f"risk index: {result.risk_index:.4f}")


deploy = typer.Typer(no_args_is_help=True, help="Deploy on Flower's deployment runtime (README \"Deploy\").")
app.add_typer(deploy, name="deploy")


@deploy.command("certs")
def deploy_certs(
    directory: Annotated[Path, typer.Argument(help="Where to write them (made 0700; the certificates volume).")],
    host: Annotated[list[str], typer.Option("--host", help="Another address clients dial the SuperLink at "
                                                           "(IP or DNS name; repeatable).")] = [],  # noqa: B006
    supernodes: Annotated[int, typer.Option(help="SuperNode key pairs to make.")] = 2,
    days: Annotated[int, typer.Option(help="Validity of the certificates.")] = 365,
    owner: Annotated[int | None, typer.Option(help="Give every file this uid (Flower's images: 49999).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing set (key rotation).")] = False,
) -> None:
    """A CA, the SuperLink's TLS certificate and key, and SuperNode authentication key pairs."""
    from fedleak.deploy.certs import write_certificates

    files = write_certificates(directory, host, supernodes, days, owner, replace)
    console.print(f"fedleak: wrote a CA, the SuperLink certificate and {len(files.supernode_keys)} SuperNode key "
                  f"pairs to {directory} (keys 0600). Register each public key: "
                  f"flwr supernode register {files.supernode_keys[0][1]} FEDERATION", markup=False)


def _image_shape(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise FedleakError(f"--input-shape: expected three positive integers C,H,W, got '{text}'")
    channels, height, width = (int(p) for p in parts)
    return channels, height, width


def main() -> None:
    # Exiting would cost 0.5 s after importing torch, 1.2 s with Flower and Ray as well (2 cores):
    # the interpreter's last garbage collection walks their whole object graph. Frozen out of it
    # at exit: atexit runs hooks last-registered first, so Ray's shutdown (registered when Ray is
    # imported, later) has run and the command's files are closed by then. Registered here, not
    # frozen here, so a caller of main() in a longer-lived process (tests) keeps its collector.
    atexit.register(gc.freeze)
    try:
        app(standalone_mode=False)
    except FedleakError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # click usage errors
        import click

        if isinstance(error, click.ClickException):
            print(f"error: {error.format_message()}", file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
