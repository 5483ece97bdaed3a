"""What each entry point imports: Flower, Ray, the datasets library, torchmetrics and friends
take seconds to import, so only the processes that use them may pay for them."""

from pathlib import Path

import pytest

from conftest import imported_after

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
HEAVY = ("flwr", "ray", "datasets", "flwr_datasets", "torchmetrics", "opacus", "torchvision", "sklearn", "scipy")


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
    # A ClientApp process (a simulation's Ray actor, a deployment's flwr-clientapp per task) imports
    # only the client side: not the adversary's scoring (torchmetrics, torchvision) nor the server.
    ("a ClientApp", "import clients.app", ["flwr"]),
])
def test_an_entry_point_imports_only_what_it_uses(entry, code, allowed):
    assert imported_after(code, HEAVY) == allowed, entry


@pytest.mark.parametrize("override", ["training.lr=-1", "federation.roundz=3", "partition.num_clients=0",
                                      "capture.rounds=[9]"])
def test_a_scenario_with_a_bad_section_is_rejected_before_torch_is_imported(override):
    """A mistyped key or a value out of range is reported without torch (1.5-1.9 s to import on 2 cores)."""
    code = ("from fedleak.core.errors import FedleakError\nfrom fedleak.scenario import load_scenario\n"
            f"try:\n    load_scenario({str(QUICKSTART)!r}, [{override!r}])\n"
            "except FedleakError as error:\n    print(error)\nelse:\n    raise SystemExit('accepted')")
    assert imported_after(code, ("torch", *HEAVY)) == []


def test_a_bad_component_option_is_still_named_by_its_own_config():
    code = ("from fedleak.core.errors import FedleakError\nfrom fedleak.scenario import load_scenario\n"
            f"try:\n    load_scenario({str(QUICKSTART)!r}, ['attacks.0.iterations=-1'])\n"
            "except FedleakError as error:\n    assert 'attacks[0].iterations' in str(error), error\n"
            "else:\n    raise SystemExit('accepted')")
    assert imported_after(code, ("torch",)) == ["torch"]  # the attack's Config lives beside its torch code


def test_reading_a_runs_results_imports_no_torch(tmp_path):
    """`fedleak results` (and compare, report) read SQLite and file headers: 0.2 s, not torch's 1.5 s."""
    from fedleak.results.checkpoint import write_checkpoint
    from fedleak.results.store import ResultStore, make_run_dir
    from fedleak.scenario import load_scenario

    run_dir = make_run_dir(tmp_path / "run")
    store = ResultStore(run_dir)
    store.start_run(run_dir.name, "quickstart", load_scenario(QUICKSTART).to_toml())
    store.finish_run(run_dir.name, "finished", None)
    store.close()
    import torch

    write_checkpoint(run_dir, 1, {"w": torch.zeros(2)})
    code = ("import sys\nfrom fedleak.cli import main\n"
            f"sys.argv = ['fedleak', 'results', {str(run_dir)!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass")
    assert imported_after(code, ("torch", *HEAVY)) == []
