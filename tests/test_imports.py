"""What each entry point imports: Flower, Ray, the datasets library, torchmetrics and friends
take seconds to import, so only the processes that use them may pay for them."""

import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
HEAVY = ("flwr", "ray", "datasets", "flwr_datasets", "torchmetrics", "opacus", "torchvision", "sklearn", "scipy")


def _imported_after(code: str) -> list[str]:
    """The heavy top-level packages in ``sys.modules`` after ``code`` ran in a fresh process."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


@pytest.mark.parametrize("entry, code, allowed", [
    ("validating and pre-flighting a scenario",
     "from fedleak.scenario import load_scenario\nfrom fedleak.scenario.preflight import check_runnable\n"
     f"check_runnable(load_scenario({str(QUICKSTART)!r}, ['runner.name=ray']))", []),
    ("fedleak audit", "import sys\nfrom fedleak.cli import main\nsys.argv = ['fedleak', 'audit', 'lenet']\n"
     "try:\n    main()\nexcept SystemExit:\n    pass", ["scipy"]),  # SciPy solves the layers' systems
    ("fedleak --help", "import sys\nfrom fedleak.cli import main\nsys.argv = ['fedleak', '--help']\n"
     "try:\n    main()\nexcept SystemExit:\n    pass", []),
    # A Ray worker imports the runner (and through it the attacks and models) at start-up, on
    # the cores the federation uses; ray itself is what it runs in.
    ("an attack worker", "import fedleak.runners._ray_pool, fedleak\nfedleak.ATTACKS.names()", ["ray"]),
])
def test_an_entry_point_imports_only_what_it_uses(entry, code, allowed):
    assert _imported_after(code) == allowed, entry
