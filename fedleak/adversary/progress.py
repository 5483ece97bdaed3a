"""Progress reporting for long runs (rounds and attacks as they complete)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from fedleak.results.rows import AttackResult, AttackStatus, RejectedReply

if TYPE_CHECKING:  # the check needs torch; progress reporting does not
    from fedleak.adversary.sanity import SanityVerdict


class Progress:
    """Receives run events; the base class ignores them (library use, tests)."""

    def round_captured(self, server_round: int, num_rounds: int, captured: int, attacked: int,
                       rejected: list[RejectedReply] | None = None) -> None: ...

    def update_checked(self, partition_id: int, verdict: SanityVerdict) -> None: ...

    def attack_finished(self, result: AttackResult) -> None: ...

    def round_evaluated(self, server_round: int, accuracy: float) -> None: ...

    def interrupted(self, run_dir: Path, last_round: int, num_rounds: int) -> None: ...


class ConsoleProgress(Progress):
    """One line per event on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def round_captured(self, server_round: int, num_rounds: int, captured: int, attacked: int,
                       rejected: list[RejectedReply] | None = None) -> None:
        self.console.print(f"[bold]round {server_round}/{num_rounds}[/]: captured {captured} updates, "
                           f"attacking {attacked}")
        for reply in rejected or []:
            who = "a client" if reply.partition_id is None else f"client {reply.partition_id}"
            self.console.print(f"  [red]{reply.status}[/]: reply of {who} (node {reply.node_id}): "
                               f"{escape(reply.reason)}")

    def update_checked(self, partition_id: int, verdict: SanityVerdict) -> None:
        colour = {"consistent": "green", "approximate": "yellow"}.get(verdict.status, "red")
        self.console.print(f"  sanity     client {partition_id:<3} [{colour}]{verdict.status}[/]: "
                           f"{escape(verdict.detail)}")

    def attack_finished(self, result: AttackResult) -> None:
        where = f"  {result.attack:<10} client {result.partition_id:<3}"
        if result.status == AttackStatus.UNSCORED:
            self.console.print(f"{where} [yellow]unscored[/]: {result.num_reconstructed} images reconstructed "
                               f"(no ground truth: stored whole)  {result.seconds:.1f}s")
            return
        if result.status != AttackStatus.OK:
            colour = "yellow" if result.status in (AttackStatus.NOT_APPLICABLE, AttackStatus.CANCELLED) else "red"
            self.console.print(f"{where} [{colour}]{result.status}[/]: {escape(result.error or '')}")
            return
        m = result.metrics
        labels = "" if m.get("label_accuracy") is None else f"  labels {m['label_accuracy']:.0%}"
        self.console.print(f"{where} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  "
                           f"MSE {m['mse']:.2e}{labels}  {result.seconds:.1f}s")

    def round_evaluated(self, server_round: int, accuracy: float) -> None:
        self.console.print(f"  global model after round {server_round}: test accuracy {accuracy:.1%}")

    def interrupted(self, run_dir: Path, last_round: int, num_rounds: int) -> None:
        self.console.print(f"[yellow]interrupted[/] after round {last_round} of {num_rounds}; "
                           f"'fedleak resume {escape(str(run_dir))}' continues it")
