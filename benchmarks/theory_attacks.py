"""Provable and analytic reconstruction on MNIST: one subcommand per study.

    python benchmarks/theory_attacks.py linear ...   # R-GAP (+ Chen & Campbell) on an R-GAP-style CNN; audit index
    python benchmarks/theory_attacks.py tensor ...   # Wang, Lee & Lei: success vs batch size and width
    python benchmarks/theory_attacks.py kkt ...      # Haim et al.: binary MLP trained on 500 images, SSIM > 0.4

Each study lives in its own module (``theory_linear.py``, ``theory_tensor.py``,
``theory_kkt.py``: ``add_arguments`` and ``run``; ``<study> --help`` lists its options);
this script only dispatches.
Measured, not asserted: one JSON line per trial, then a Markdown table.
"""

from __future__ import annotations

import argparse

import theory_kkt
import theory_linear
import theory_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    studies = parser.add_subparsers(dest="study", required=True)
    for name, study in (("linear", theory_linear), ("tensor", theory_tensor), ("kkt", theory_kkt)):
        summary = study.__doc__.splitlines()[0]
        study_parser = studies.add_parser(name, help=summary, description=summary)
        study.add_arguments(study_parser)
        study_parser.set_defaults(run=study.run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
