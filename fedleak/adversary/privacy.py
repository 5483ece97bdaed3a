"""Privacy accounting: ε at a given δ per client, from Opacus' RDP analysis.

Every Gaussian mechanism a defense applies is a :class:`~fedleak.defenses.PrivacyEvent`
(noise multiplier z, sampling rate q, steps); ``opacus.accountants.analysis.rdp``
gives its Rényi-DP curve (Mironov 2017; Mironov, Talwar & Zhang 2019) and converts a
curve to (ε, δ).

One participation releases one update. When several mechanisms shape it (DP-SGD,
then local noise; central noise on the aggregate) each bounds the same release on its
own — the later ones see the earlier ones' output, and the Rényi divergence of
mixtures is at most that of their components — so the round's curve is their
pointwise minimum, not their sum. Participations compose: curves add up per client.

Two views are kept, because central DP does not protect against the server:
``update`` counts mechanisms applied before the update leaves the client, ``model``
also counts the noise added to the released aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fedleak.defenses import DefensePipeline, LocalRound, PrivacyEvent
from fedleak.results.rows import Epsilon

# Opacus is imported where a curve is computed: it loads torch.distributed, SciPy and SymPy
# (1.3–1.4 s on 2 cores), and a run without a DP mechanism never computes one.


def rdp_curve(event: PrivacyEvent) -> np.ndarray:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    return np.asarray(compute_rdp(q=event.sample_rate, noise_multiplier=event.noise_multiplier,
                                  steps=event.steps, orders=RDPAccountant.DEFAULT_ALPHAS), dtype=float)


def release_curve(events: Sequence[PrivacyEvent]) -> np.ndarray | None:
    """The RDP curve of one release shaped by ``events`` (their pointwise minimum)."""
    curves = [rdp_curve(event) for event in events]
    return np.minimum.reduce(curves) if curves else None


def epsilon(curve: np.ndarray | None, delta: float) -> float | None:
    if curve is None:
        return None
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import get_privacy_spent

    value, _ = get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=curve, delta=delta)
    return float(value)


class PrivacyLedger:
    """Adds up each client's participations; thread-safe use is the caller's concern."""

    def __init__(self, pipeline: DefensePipeline, delta: float) -> None:
        self.pipeline = pipeline
        self.delta = delta
        self._update: dict[int, np.ndarray] = {}
        self._model: dict[int, np.ndarray] = {}

    def record(self, partition_id: int, local_round: LocalRound) -> Epsilon:
        """Account one participation of ``partition_id``; returns its ε so far."""
        events = self.pipeline.privacy_events(local_round)
        for view, kept in ((self._update, [e for e in events if e.protects == "update"]),
                           (self._model, events)):
            curve = release_curve(kept)
            if curve is not None:
                view[partition_id] = view.get(partition_id, 0.0) + curve
        return self.of(partition_id)

    def of(self, partition_id: int) -> Epsilon:
        return Epsilon(epsilon(self._update.get(partition_id), self.delta),
                       epsilon(self._model.get(partition_id), self.delta))

    def worst(self, partitions: Iterable[int] | None = None) -> Epsilon:
        """The largest ε of ``partitions`` (default: every client) so far — the guarantee
        that holds for all of them."""
        chosen = None if partitions is None else set(partitions)

        def largest(view: dict[int, np.ndarray]) -> float | None:
            values = [epsilon(curve, self.delta) for p, curve in view.items() if chosen is None or p in chosen]
            return max(values) if values else None  # type: ignore[type-var]

        return Epsilon(largest(self._update), largest(self._model))
