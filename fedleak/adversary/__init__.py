"""The adversarial server's side, independent of Flower: capture → attack → score → store.

:class:`Adversary` (``adversary.py``) drives it; ``runner/`` runs the attacks (inline or on
Ray workers), ``evaluation.py`` and ``metrics.py`` score them against the clients' real
images, ``privacy.py`` accounts ε, ``malicious.py`` crafts what a malicious server sends,
``audit.py`` measures an architecture's leakage without data. Names load on first use: an
attack worker imports ``runner`` and never the scoring (torchmetrics) or the accountant.
"""

from fedleak.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(globals(), {
    "fedleak.adversary.adversary": ["Adversary"],
    "fedleak.adversary.evaluation": ["AttackResult", "Evaluator"],
    "fedleak.adversary.privacy": ["Epsilon", "PrivacyLedger"],
    "fedleak.adversary.progress": ["ConsoleProgress", "Progress"],
})
