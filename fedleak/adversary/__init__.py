"""The adversarial server's side, independent of Flower: capture → attack → score → store.

:class:`Adversary` (``adversary.py``) drives it and hands the attacks to a runner
(:mod:`fedleak.runners`); ``ground_truth.py`` and ``metrics.py`` score them against the
clients' real images, ``privacy.py`` accounts ε, ``malicious.py`` crafts what a malicious
server sends, ``audit.py`` measures an architecture's leakage without data. Names load on
first use (accounting imports Opacus).
"""

from fedleak.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(globals(), {
    "fedleak.adversary.adversary": ["Adversary"],
    "fedleak.adversary.ground_truth": ["PlanTruth"],
    "fedleak.adversary.privacy": ["PrivacyLedger"],
    "fedleak.adversary.progress": ["ConsoleProgress", "Progress"],
})
