"""Fuzzing both boundaries: only a FedleakError or a recorded rejection may ever come out.

* Scenarios: random ``--set`` overrides (known keys and junk, values of every TOML kind,
  out-of-range numbers) on every shipped scenario. Whatever validates must also pass the
  data checks or fail them with a FedleakError, and serialise back to TOML (the store
  writes it first thing).
* Replies: one honest reply and one mutated one per round, at the server boundary. The
  round goes on, the aggregate stays finite, every reply is stored once, and a reply with
  non-finite weights or an impossible shape is never accepted.

Examples: 500 each by default; ``FEDLEAK_FUZZ_EXAMPLES=2000`` for a longer run.
"""

from __future__ import annotations

import logging
import os
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, MetricRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedleak.core import wire
from fedleak.core.errors import FedleakError
from fedleak.federation import records
from fedleak.scenario import load_scenario
from fedleak.scenario.preflight import check_runnable

from conftest import tiny_scenario
from test_reply_boundary import Federation

pytestmark = pytest.mark.xdist_group("test_fuzz")  # its module fixture runs once, on one worker

EXAMPLES = int(os.environ.get("FEDLEAK_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


def _keys(table: object, prefix: str = "") -> list[str]:
    """Every dotted path in a resolved scenario (list items by index)."""
    items = table.items() if isinstance(table, dict) else enumerate(table) if isinstance(table, list) else []
    paths = []
    for key, value in items:
        path = f"{prefix}{key}"
        paths += [path, *_keys(value, path + ".")]
    return paths


KNOWN_KEYS = sorted({key for path in SCENARIOS for key in _keys(load_scenario(path).model_dump(mode="json"))})
JUNK = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=8)
KNOWN = st.sampled_from(KNOWN_KEYS)
KEYS = st.one_of(KNOWN, KNOWN, KNOWN, KNOWN, st.builds(lambda k, j: f"{k}.{j}", st.sampled_from(KNOWN_KEYS), JUNK),
                 JUNK)
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2, 10**20, 2**63]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, -0.0, 0.5, 1e-300]))
LITERALS = st.one_of(
    st.integers(0, 8).map(str), st.sampled_from(["0.1", "0.5", "1.0", "2"]),  # often valid: reach the data checks
    NUMBERS.map(lambda n: "nan" if n != n else ("inf" if n == float("inf") else "-inf" if n == -float("inf")
                                                 else repr(n))),
    st.sampled_from(["true", "false", '""', '"digits"', '"mnist"', '"dirichlet"', '"fedavg"', '"malicious"',
                     '"secagg-plus"', '"ray"', "[]", "[0]", "[1, 2]", "[-1]", '["x"]', "[[1]]", "{}",
                     '{name = "dlg"}', '{name = 3}', '[{name = "idlg"}]', '[{name = "int8"}, {name = "top-k"}]',
                     '[{name = "secagg-plus"}]', '{name = ["lenet"]}', "1979-05-27", "[1, 'a']"]),
    st.text(max_size=12),  # taken as a plain string when it is no TOML literal
)
OVERRIDES = st.lists(st.builds(lambda k, v: f"{k}={v}", KEYS, LITERALS), min_size=1, max_size=3)


@FUZZ
@given(path=st.sampled_from(SCENARIOS), overrides=OVERRIDES)
def test_scenario_mutations_give_a_scenario_that_runs_or_one_fedleak_error(path, overrides):
    try:
        scenario = load_scenario(path, overrides)
        scenario.to_toml()
        check_runnable(scenario)
    except FedleakError as error:
        assert "\n" not in str(error) and str(error)


def _mutations():
    """(name, function of (arrays, metrics) → (arrays, metrics)); arrays name → np.ndarray."""
    def set_metric(key, value):
        return lambda arrays, metrics: (arrays, {**metrics, key: value})

    def drop_metric(key):
        return lambda arrays, metrics: (arrays, {k: v for k, v in metrics.items() if k != key})

    def on_array(change):
        def mutate(arrays, metrics, index):
            name = sorted(arrays)[index % len(arrays)]
            return {**arrays, name: change(arrays[name])}, metrics
        return mutate

    metric_keys = st.sampled_from([wire.PARTITION_ID, wire.LR, wire.LOCAL_STEPS, wire.BATCH_SIZE,
                                   wire.NUM_EXAMPLES, wire.TRAIN_LOSS])
    # What a MetricRecord can carry (it refuses booleans and strings itself).
    metric_values = st.one_of(st.integers(-5, 200), st.integers(-(2**63), 2**63 - 1),
                              st.floats(allow_nan=True, allow_infinity=True),
                              st.lists(st.integers(-3, 3), max_size=3), st.lists(st.floats(-1, 1), min_size=1, max_size=2))
    array_changes = st.sampled_from([
        lambda a: a.astype(np.float64), lambda a: a.astype(np.float16), lambda a: a.astype(np.int32),
        lambda a: np.full_like(a, np.nan), lambda a: np.full_like(a, np.inf), lambda a: a.reshape(-1)[:1].copy(),
        lambda a: np.concatenate([a.reshape(-1), a.reshape(-1)]), lambda a: a.reshape(-1).copy(),
        lambda a: a * 1e30, lambda a: a.T.copy() if a.ndim == 2 else a[..., None],
    ])
    return st.one_of(
        st.builds(set_metric, metric_keys, metric_values),
        st.builds(drop_metric, metric_keys),
        st.builds(lambda change, index: lambda arrays, metrics: on_array(change)(arrays, metrics, index),
                  array_changes, st.integers(0, 20)),
        st.builds(lambda index: lambda arrays, metrics: ({k: v for i, (k, v) in enumerate(sorted(arrays.items()))
                                                          if i != index % len(arrays)}, metrics), st.integers(0, 20)),
        st.just(lambda arrays, metrics: ({**arrays, "extra.weight": np.zeros(3, np.float32)}, metrics)),
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    logging.getLogger("flwr").setLevel(logging.WARNING)  # FedAvg logs every round it aggregates
    return Federation(tmp_path_factory.mktemp("fuzz"), tiny_scenario(partition={"num_clients": 2}))


@FUZZ
@given(mutations=st.lists(_mutations(), min_size=1, max_size=3), truncate=st.booleans())
def test_malformed_replies_are_rejected_and_the_round_goes_on(federation, mutations, truncate):
    arrays, metrics = federation.honest_arrays(1), federation.honest_metrics(1)
    for mutate in mutations:
        arrays, metrics = mutate(arrays, metrics)
    content = records.reply_content(arrays, None, metrics)
    if truncate:  # the Array's header no longer matches its bytes
        name = sorted(content["arrays"])[0]
        array = content["arrays"][name]
        content["arrays"][name] = Array(dtype=array.dtype, shape=array.shape, stype=array.stype, data=array.data[:-1])
    if not metrics:
        del content["metrics"]
    rows_before = federation.rows()
    aggregate = federation.round([federation.honest_content(0), content])
    assert all(bool(torch.isfinite(w).all()) for w in aggregate.values())
    rows = federation.rows()[len(rows_before):]
    assert sorted(r["partition_id"] for r in rows if r["status"] == "accepted")[:1] == [0]
    assert len(rows) == 2
    second = [r for r in rows if r["node_id"] == str(federation.node(1))][0]
    received = {k: np.asarray(v) for k, v in arrays.items()}
    impossible = truncate or any(not np.isfinite(v).all() or v.dtype != np.float32 for v in received.values()) \
        or set(received) != set(federation.sent) \
        or any(received[k].shape != tuple(w.shape) for k, w in federation.sent.items())
    if impossible:
        assert second["status"] == "rejected" and second["reason"]


def test_the_fuzzed_reply_is_accepted_before_it_is_mutated(federation):
    """The mutations start from a valid reply: unmutated, both replies are accepted."""
    aggregate = federation.round([federation.honest_content(0), federation.honest_content(1)])
    assert all(bool(torch.isfinite(w).all()) for w in aggregate.values())
    assert [r["status"] for r in federation.rows()[-2:]] == ["accepted", "accepted"]
    assert isinstance(federation.honest_content(0)["arrays"], ArrayRecord)
    assert isinstance(federation.honest_content(0)["metrics"], MetricRecord)
