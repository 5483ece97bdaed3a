"""``fedleak …``: run scenarios and read their results.

User errors end with one line on stderr naming the problem, and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedleak.errors import FedleakError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Federated learning with an adversarial server that reconstructs client data.")
# Rich falls back to 80 columns when piped; the results table needs a little more.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a key: --set training.lr=0.5")] = [],  # noqa: B006
    out: Annotated[Path, typer.Option(help="Parent folder of the run directory.")] = Path("runs"),
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's logs.")] = False,
    wait: Annotated[bool | None, typer.Option(
        help="At the end, finish every attack (--wait) or cancel the rest (--no-wait); default: runner.wait.")] = None,
) -> None:
    """Run a scenario as a Flower simulation; store everything in a new run directory."""
    from fedleak.data import load_dataset
    from fedleak.federation import new_run_dir, simulate
    from fedleak.progress import ConsoleProgress
    from fedleak.scenario import load_scenario

    resolved = load_scenario(scenario, [*set_, *([f"runner.wait={str(wait).lower()}"] if wait is not None else [])])
    load_dataset(resolved.dataset)  # fail fast (exit 2) on a missing data root, before Ray starts
    run_dir = new_run_dir(out, resolved)
    console.print(f"fedleak: running [bold]{resolved.name}[/] → {run_dir}")
    simulate(resolved, run_dir, ConsoleProgress(), verbose=verbose)
    results(run_dir)


_ATTACK_COUNTS = """
SELECT SUM(status = 'ok') AS ok, SUM(status = 'failed' AND error NOT LIKE 'cancelled:%') AS failed,
       SUM(status = 'failed' AND error LIKE 'cancelled:%') AS cancelled
FROM attack_results WHERE run_id = ?"""


@app.command()
def results(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Print the per-round table of a run."""
    from fedleak.report import round_table
    from fedleak.store import ResultStore

    store = ResultStore.open_existing(run_dir)
    for run_row in store.query("SELECT run_id, status, risk_index FROM runs"):
        console.print(round_table(store, run_row["run_id"]))
        risk = "not auditable" if run_row["risk_index"] is None else f"{run_row['risk_index']:.3f}"
        attacks = store.query(_ATTACK_COUNTS, run_row["run_id"])[0]
        console.print(f"attacks: {attacks['ok'] or 0} finished, {attacks['failed'] or 0} failed, "
                      f"{attacks['cancelled'] or 0} cancelled at the end of the run")
        console.print(f"status: {run_row['status']} · model risk index: {risk} (fedleak audit; 0 = fully recoverable)"
                      f" · images: {run_dir / 'images'}")
    store.close()


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
    from pydantic import ValidationError

    from fedleak.attacks.linear_systems import UnsupportedArchitecture
    from fedleak.audit import audit_model, audit_table
    from fedleak.models import MODELS, ModelSpec
    from fedleak.scenario import apply_override, first_error

    shape = _image_shape(input_shape)
    if num_classes < 2:
        raise FedleakError(f"--num-classes: expected at least 2, got {num_classes}")
    table: dict = {}
    for override in set_:
        apply_override(table, override)
    try:
        config = MODELS.get(model).Config.model_validate(table)
    except ValidationError as error:
        raise FedleakError(f"--set {first_error(error)}") from None
    spec = ModelSpec(model, config, shape, num_classes, (0.5,) * shape[0], (0.5,) * shape[0])
    try:
        result = audit_model(spec.build(seed=seed), probe_seed=seed)
    except UnsupportedArchitecture as error:
        raise FedleakError(f"audit: {model}: {error}") from None
    except RuntimeError as error:  # e.g. an input too small for the model's kernels
        raise FedleakError(f"audit: {model} does not run on {input_shape}: {str(error).splitlines()[0]}") from None
    console.print(audit_table(result, title=f"{model} on {'×'.join(map(str, shape))}"))
    console.print(f"risk index: {result.risk_index:.4f}")


def _image_shape(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise FedleakError(f"--input-shape: expected three positive integers C,H,W, got '{text}'")
    channels, height, width = (int(p) for p in parts)
    return channels, height, width


def main() -> None:
    try:
        app(standalone_mode=False)
    except FedleakError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
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
