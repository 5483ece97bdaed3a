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
) -> None:
    """Run a scenario as a Flower simulation; store everything in a new run directory."""
    from fedleak.data import load_dataset
    from fedleak.federation import new_run_dir, simulate
    from fedleak.progress import ConsoleProgress
    from fedleak.scenario import load_scenario

    resolved = load_scenario(scenario, set_)
    load_dataset(resolved.dataset)  # fail fast (exit 2) on a missing data root, before Ray starts
    run_dir = new_run_dir(out, resolved)
    console.print(f"fedleak: running [bold]{resolved.name}[/] → {run_dir}")
    simulate(resolved, run_dir, ConsoleProgress(), verbose=verbose)
    results(run_dir)


@app.command()
def results(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Print the per-round table of a run."""
    from fedleak.report import round_table
    from fedleak.store import ResultStore

    store = ResultStore.open_existing(run_dir)
    for run_row in store.query("SELECT run_id, status FROM runs"):
        console.print(round_table(store, run_row["run_id"]))
        console.print(f"status: {run_row['status']} · images: {run_dir / 'images'}")
    store.close()


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
