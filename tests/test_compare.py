"""fedleak compare reads stores: pairing by data-plan digest, the per-arm verdict."""

import pytest

from fedleak.core.errors import FedleakError
from fedleak.results.compare import compare, points
from fedleak.results.rows import AttackResult, Epsilon
from fedleak.results.store import ResultStore

PLAN = {"seed": 0, "shards": "a", "schedule": {"batch_size": 1}, "pool": "p", "initial_model": "m"}


def _run(path, defenses="", plan=PLAN, accuracy=0.9, recovered=1.0, epsilon=None):
    store = ResultStore(path)
    store.start_run(path.name, "s", f"name = 's'\n{defenses}")
    store.record_data_plan(path.name, plan)
    for server_round in (1, 2):
        store.record_round(path.name, server_round, accuracy - 0.1 * (2 - server_round), 1.0, Epsilon(epsilon, epsilon))
    metrics = {"psnr": 30.0, "best_psnr": 35.0, "success_rate": recovered, "prior_psnr": 12.0, "leakage": 0.7,
               "recovered_rate": recovered}
    store.record_attack(AttackResult(path.name, 1, 1, 0, "idlg", "ok", 1.0, metrics=metrics))
    store.record_attack(AttackResult(path.name, 1, 2, 1, "idlg", "not applicable", 0.0))
    store.finish_run(path.name)
    store.close()
    return path


def test_runs_with_equal_plans_are_paired_and_the_best_defending_arm_is_named(tmp_path):
    runs = [_run(tmp_path / "none"), _run(tmp_path / "noise", 'defenses = [{name = "local-dp"}]', accuracy=0.8,
                                           recovered=0.0, epsilon=3.0),
            _run(tmp_path / "more-noise", 'defenses = [{name = "local-dp"}]', accuracy=0.5, recovered=0.0)]
    comparison = compare(runs)
    assert comparison.paired and comparison.unpaired_reason is None
    assert comparison.baseline == "none" and comparison.best_defending == "noise"
    none, noise, more = comparison.summary
    assert (none.defends, noise.defends, more.defends) == (False, True, True)
    assert noise.accuracy_cost == pytest.approx(0.1) and noise.epsilon == 3.0 and none.epsilon is None
    assert points(noise.accuracy_cost) == "-10.0 pt" and points(none.accuracy_cost) == "+0.0 pt"
    assert noise.scored == 1  # the not-applicable result is not a score
    assert len(comparison.rows) == 2 * 3  # 2 rounds × 3 arms, round 2 without an attack


def test_runs_from_different_plans_are_unpaired_naming_what_differs(tmp_path):
    other = {**PLAN, "shards": "b", "initial_model": "n"}
    comparison = compare([_run(tmp_path / "a"), _run(tmp_path / "b", plan=other)])
    assert not comparison.paired
    assert comparison.unpaired_reason == "b and a differ in initial_model, shards"
    assert comparison.as_json()["paired"] is False


def test_an_arm_no_attack_scored_is_not_said_to_defend(tmp_path):
    store = ResultStore(tmp_path / "quiet")
    store.start_run("quiet", "s", "name = 's'")
    store.record_data_plan("quiet", PLAN)
    store.record_round("quiet", 1, 0.5, 1.0)
    store.finish_run("quiet")
    store.close()
    (summary,) = compare([tmp_path / "quiet"]).summary
    assert summary.defends is None and summary.scored == 0


def test_neither_a_run_nor_a_sweep_is_a_one_line_error(tmp_path):
    with pytest.raises(FedleakError, match="neither a run directory"):
        compare([tmp_path])


def test_a_database_without_the_comparison_columns_is_a_one_line_error(tmp_path):
    run = _run(tmp_path / "old")
    import sqlite3

    with sqlite3.connect(run / "results.sqlite") as db:
        db.execute("ALTER TABLE attack_results DROP COLUMN leakage")
    with pytest.raises(FedleakError, match="cannot be compared .*leakage.*earlier fedleak"):
        compare([run])
