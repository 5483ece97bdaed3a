"""Attack throughput (batched against one by one) and what the adversary costs a round.

``attacks``: N concurrent attacks of one kind (DLG, Inverting Gradients) against one
round of LeNet/MNIST FedSGD, batch 1. Client i took one step (lr 1) on image i of the
real t10k split from the same global model (DLG's sigmoid LeNet, seed 0, PyTorch's
initialisation, or DLG's U(−0.5, 0.5) with ``--init uniform``), so the N attacks share
a batch key. *batched*: the N jobs through
``execute_batch`` (one vectorised optimisation of N problems; the runners do this
with ``runner.max_batch`` ≥ N). *one by one*: the same jobs through ``execute``, in
turn. Same configuration either way, so every attack takes the same steps (the tests
check that batched and one-by-one results agree). One by one is sequential, so its
rate does not depend on N: above ``--alone-cap`` attacks only the first
``--alone-cap`` run, and the rate and success rate are that sample's (marked "sample").
Success = MSE < 1e-3 (DLG's criterion) against the client's image. On a GPU the
GPU's utilisation and memory are sampled from ``nvidia-smi`` while the batch runs, and
PyTorch's peak allocation is read after it.

``round``: the federation's round time (MNIST, LeNet, 8 clients; FedSGD batch 1, or
FedAvg with ``--local-steps``) in the arms of ``ARMS``, alternated in one process: plain
Flower FedAvg; fedleak's server capturing and storing; that plus async dispatch to the
Ray pool (``runner.name = "ray"``, leftovers cancelled at the end) of one-iteration
attacks (the dispatch path and an attack's set-up, e.g. iDLG's label inference) and of
full attacks (their compute shares the machine with the federation: on a CPU-only
machine, the same cores). Round time = time between the server's evaluations of
consecutive rounds, rounds ≥ 2 (round 1 includes starting the actors). Reported as
medians and means, and as their ratios to plain FedAvg measured in the same run. Beside
them, the server's own time per round in the outermost strategy's ``aggregate_train``
(plain: FedAvg's average; fedleak: the reply checks, capture, store and the same average):
what the adversary adds to the round's critical path, less exposed to the noise of the
clients sharing the machine.
Flower's simulation polls for messages every 0.1 s, so round times come in steps of
about 0.1 s: a FedSGD round (~0.3 s) cannot resolve 5 %; FedAvg rounds of seconds can.

    python benchmarks/attack_throughput.py attacks [--attacks dlg,inverting] [--concurrent 1,8,64,256]
        [--alone-cap 16] [--init default|uniform] [--device auto] [--set dlg.iterations=300] [--json out.json]
    python benchmarks/attack_throughput.py round [--clients 8] [--rounds 8] [--repeats 2] [--attack idlg]
        [--arms fedavg,capture,dispatch,busy] [--local-steps 0] [--batch-size 1]

``--jsonl FILE`` appends each result as a JSON line the moment it is measured (a run cut
short keeps what it finished). Measured, not asserted.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.adversary.metrics import SUCCESS_MSE
from fedleak.adversary.progress import Progress
from fedleak.attacks import ATTACKS
from fedleak.client.training import evaluate, offline_update
from fedleak.data import ImageDataset, load_dataset
from fedleak.federation import build_server_app, records, run_simulated
from fedleak.federation.server import mean_train_loss
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.models import ModelSpec
from fedleak.results.store import new_run_dir
from fedleak.runners import AttackJob, AttackOutcome, execute, execute_batch
from fedleak.scenario import Scenario, parse_scenario

from mnist_setup import append_jsonl, lenet_on_mnist, machine, mnist_parser

DEFAULT_CONFIG = {"dlg": {}, "inverting": {"iterations": 300}}
"""Registry defaults (DLG: 300 L-BFGS steps), but Inverting Gradients at 300 Adam steps
instead of 4800: at 4800, 256 attacks one by one would take hours on a CPU. Measured on
images 0–7 (2026-12-01): on the default initialisation 300 steps recovered 8 of 8 (44–53
dB; 1000 and 3000 steps changed nothing); on U(−0.5, 0.5) 0 of 8 (8–15 dB), 1 at 1000
steps, 2 at 3000 (18–36 dB)."""


# ---------------------------------------------------------------- attacks


def client_jobs(
    spec: ModelSpec, pool: ImageDataset, attack: str, config: dict[str, Any], count: int
) -> list[AttackJob]:
    """``count`` clients of one FedSGD round, client i holding image i; one job each."""
    sent = spec.build(seed=0).state_dict()
    attack_config = ATTACKS.get(attack).Config(**config)
    return [AttackJob(offline_update(spec, sent, pool, [torch.tensor([i])], lr=1.0, partition_id=i),
                      attack, attack_config, spec) for i in range(count)]


class GpuSampler:
    """Samples GPU utilisation (%) and memory (MiB) with ``nvidia-smi`` every 200 ms, if there is one."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float]] = []

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_: object) -> None:
        if self.enabled:
            self._process.terminate()
            output = self._process.communicate()[0]
            self.samples = [tuple(map(float, line.split(",")[:2])) for line in output.splitlines() if line.strip()]

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        busy = [u for u, _ in self.samples]
        return {"gpu_util_mean": statistics.mean(busy), "gpu_util_max": max(busy),
                "gpu_mem_max_mib": max(m for _, m in self.samples)}


def run_jobs(jobs: list[AttackJob], pool: ImageDataset, batched: bool, on_gpu: bool) -> dict[str, Any]:
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with GpuSampler(batched and on_gpu) as sampler:
        started = time.perf_counter()
        outcomes = execute_batch(jobs) if batched else [execute(job) for job in jobs]
        seconds = time.perf_counter() - started
    recovered = [_recovered(outcome, pool) for outcome in outcomes]
    iterations = [o.reconstruction.extras["iterations"] for o in outcomes if o.reconstruction is not None]
    errors = sorted({o.error for o in outcomes if o.error})
    return {"attacks": len(jobs), "seconds": seconds, "per_second": len(jobs) / seconds,
            "success": sum(recovered) / len(jobs), "mean_iterations": statistics.mean(iterations or [0]),
            "errors": errors, "gpu": sampler.summary(),
            "torch_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None}


def _recovered(outcome: AttackOutcome, pool: ImageDataset) -> bool:
    if outcome.reconstruction is None:
        return False
    truth = pool.images[outcome.job.update.partition_id]
    return float(((outcome.reconstruction.images[0] - truth) ** 2).mean()) < SUCCESS_MSE


def attacks_benchmark(args) -> list[dict[str, Any]]:
    splits, spec = lenet_on_mnist(args.data_root, args.init)
    attacks = args.attacks.split(",")
    configs = {attack: {**DEFAULT_CONFIG[attack], "device": args.device, **_overrides(args.set, attack)}
               for attack in attacks}
    for attack, config in configs.items():  # warm-up: lazy initialisation (and CUDA's) out of the timings
        run_jobs(client_jobs(spec, splits.train, attack, {**config, "iterations": 1}, 2), splits.train,
                 batched=True, on_gpu=False)
    rows = []
    sampled: dict[str, dict[str, Any]] = {}  # the first --alone-cap attacks one by one, reused above the cap
    for count in map(int, args.concurrent.split(",")):  # counts outer: the first counts of every attack first
        for attack, config in configs.items():
            jobs = client_jobs(spec, splits.train, attack, config, count)
            batched = run_jobs(jobs, splits.train, batched=True, on_gpu=_on_gpu(args.device))
            sample = count > args.alone_cap
            if sample and attack not in sampled:
                sampled[attack] = run_jobs(jobs[: args.alone_cap], splits.train, batched=False, on_gpu=False)
            alone = sampled[attack] if sample else run_jobs(jobs, splits.train, batched=False, on_gpu=False)
            row = {"attack": attack, "concurrent": count, "config": config, "batched": batched,
                   "one_by_one": alone, "one_by_one_sampled": sample,
                   "speedup": batched["per_second"] / alone["per_second"]}
            rows.append(row)
            print(_line(row), flush=True)
            append_jsonl(args.jsonl, {"part": "attacks", **row})
    return rows


def _overrides(pairs: list[str], attack: str) -> dict[str, Any]:
    """``--set dlg.iterations=300``: the keys for ``attack``, values parsed as JSON where they parse."""
    chosen = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        name, option = key.split(".", 1)
        if name == attack:
            try:
                chosen[option] = json.loads(value)
            except json.JSONDecodeError:
                chosen[option] = value
    return chosen


def _on_gpu(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def _line(row: dict[str, Any]) -> str:
    b, a = row["batched"], row["one_by_one"]
    gpu = f"  GPU {b['gpu']['gpu_util_mean']:.0f}% mean" if b["gpu"] else ""
    sample = f" (sample of {a['attacks']})" if row["one_by_one_sampled"] else ""
    return (f"{row['attack']:9s} N={row['concurrent']:<4d} batched {b['per_second']:8.3f}/s "
            f"({b['seconds']:.1f} s, success {b['success']:.0%}, iters {b['mean_iterations']:.0f})  "
            f"one by one {a['per_second']:8.3f}/s{sample} (success {a['success']:.0%}, "
            f"iters {a['mean_iterations']:.0f})  x{row['speedup']:.1f}{gpu}"
            + (f"  errors {b['errors'] + a['errors']}" if b["errors"] or a["errors"] else ""))


# ---------------------------------------------------------------- round


class _Stamps(Progress):
    """Times at which the server finished evaluating each round."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def round_evaluated(self, server_round: int, accuracy: float) -> None:
        self.times.append(time.perf_counter())


def plain_fedavg_app(scenario: Scenario, stamps: _Stamps) -> ServerApp:
    """Flower's FedAvg with the same evaluation as fedleak's server, and nothing else."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        splits = load_dataset(scenario.dataset)
        spec = scenario.model_spec(splits)
        test = splits.test.subset(slice(scenario.federation.test_samples))
        fedavg = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1,
                        min_available_nodes=scenario.partition.num_clients, train_metrics_aggr_fn=mean_train_loss)

        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            accuracy, loss = evaluate(spec.with_weights(arrays.to_torch_state_dict()), test)
            if server_round > 0:
                stamps.round_evaluated(server_round, accuracy)
            return MetricRecord({"accuracy": accuracy, "loss": loss})

        fedavg.start(grid, ArrayRecord(spec.build(seed=scenario.seed).state_dict()),
                     num_rounds=scenario.federation.rounds, train_config=records.training_record(scenario.training),
                     evaluate_fn=evaluate_fn)

    return app


ARMS = {
    "fedavg": "plain Flower FedAvg, no fedleak server",
    "capture": "fedleak's server: every update decoded, accounted and stored; no attack",
    "dispatch": "capture + one attack per update sent to the Ray pool, each a single iteration "
                "(the dispatch path plus what the attack computes before its first step)",
    "busy": "capture + dispatch of full attacks (registry defaults) running on the pool beside the rounds",
}


def round_scenario(args, arm: str) -> Scenario:
    fields = ATTACKS.get(args.attack).Config.model_fields
    one_step = {"iterations": 1} if "iterations" in fields else {}  # what a non-iterative attack does anyway
    attacks = {"dispatch": [{"name": args.attack, **one_step}], "busy": [{"name": args.attack}]}.get(arm, [])
    return parse_scenario({
        "name": f"throughput-{arm}", "dataset": {"name": "mnist", "data_root": str(args.data_root.resolve())},
        "model": {"name": "lenet"}, "partition": {"num_clients": args.clients},
        "training": {"algorithm": "fedavg" if args.local_steps else "fedsgd", "local_steps": args.local_steps,
                     "batch_size": args.batch_size, "lr": 0.1},
        "federation": {"rounds": args.rounds, "test_samples": 500},
        # Room for every update's attack: the arms measure dispatch, not the backpressure policy.
        "runner": {"name": "ray", "workers": args.workers, "wait": False,
                   "max_pending": args.rounds * args.clients} if attacks else {},
        "attacks": attacks,
    })


@contextmanager
def _timed(cls: type, method: str, sink: list[float]) -> Iterator[None]:
    """Append to ``sink`` the wall time of every call of ``cls.method`` (in the server's thread)."""
    original = getattr(cls, method)

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            sink.append(time.perf_counter() - start)

    setattr(cls, method, timed)
    try:
        yield
    finally:
        setattr(cls, method, original)


def round_times(args, arm: str, out: Path) -> tuple[list[float], list[float], float]:
    """Rounds 2..R: the round times, the server's time in the outermost strategy's ``aggregate_train``
    (plain: FedAvg's; capture: fedleak's checks, capture and store, then FedAvg's), and the GPUs the
    run's Ray had (the attack workers' shares come from them: ``runner.num_gpus`` unset)."""
    scenario, stamps, aggregating = round_scenario(args, arm), _Stamps(), []
    app = (plain_fedavg_app(scenario, stamps) if arm == "fedavg"
           else build_server_app(lambda _: (scenario, new_run_dir(out, scenario.name)), stamps))
    with _timed(FedAvg if arm == "fedavg" else AdversarialStrategy, "aggregate_train", aggregating):
        run_simulated(app, scenario)
    gpus = float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0
    if ray.is_initialized():
        ray.shutdown()
    return [b - a for a, b in zip(stamps.times, stamps.times[1:])], aggregating[1:], gpus


def round_benchmark(args) -> dict[str, Any]:
    out = Path(args.out)
    arms = args.arms.split(",")
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    aggregating: dict[str, list[float]] = {arm: [] for arm in arms}
    gpus: dict[str, float] = {}
    result: dict[str, Any] = {}
    for repeat in range(args.repeats):
        for arm in arms:
            measured, spent, gpus[arm] = round_times(args, arm, out)
            times[arm].extend(measured)
            aggregating[arm].extend(spent)
            print(f"repeat {repeat + 1} {arm:8s}: rounds 2..{args.rounds} "
                  + " ".join(f"{t:.3f}" for t in measured) + f" s (Ray GPUs {gpus[arm]:g})", flush=True)
        result = _round_summary(args, times, aggregating, gpus, repeat + 1)
        append_jsonl(args.jsonl, {"part": "round", **result})  # after every repeat: a cut-short run keeps it
    _print_round_summary(result)
    return result


def _round_summary(args, times: dict[str, list[float]], aggregating: dict[str, list[float]],
                   gpus: dict[str, float], repeats_done: int) -> dict[str, Any]:
    """Medians and means of every arm so far, their ratios to plain FedAvg, the server's share."""
    medians = {arm: statistics.median(t) for arm, t in times.items()}
    return {"times": times, "medians": medians, "means": {arm: statistics.mean(t) for arm, t in times.items()},
            "aggregate_train": aggregating,
            "ratios": {arm: medians[arm] / medians["fedavg"] for arm in medians},
            "aggregate_train_medians": {arm: statistics.median(t) for arm, t in aggregating.items()},
            "ray_gpus": gpus, "workers": args.workers, "clients": args.clients, "local_steps": args.local_steps,
            "batch_size": args.batch_size, "repeats_done": repeats_done, "repeats_planned": args.repeats}


def _print_round_summary(result: dict[str, Any]) -> None:
    medians, means, server = result["medians"], result["means"], result["aggregate_train_medians"]
    for arm in medians:
        print(f"{arm:8s} median round {medians[arm]:.3f} s (ratio {result['ratios'][arm]:.3f})   "
              f"mean {means[arm]:.3f} s (ratio {means[arm] / means['fedavg']:.3f}) to plain FedAvg")
    for arm in medians:  # the server's own share of a round: what the adversary adds on the critical path
        extra = server[arm] - server["fedavg"]
        print(f"{arm:8s} aggregate_train median {1000 * server[arm]:.1f} ms/round "
              f"({1000 * extra:+.1f} ms = {extra / medians['fedavg']:+.2%} of a plain round)")


def main() -> None:
    parser = mnist_parser(__doc__)
    parser.add_argument("part", choices=["attacks", "round"])
    parser.add_argument("--attacks", default="dlg,inverting")
    parser.add_argument("--concurrent", default="1,8,64,256")
    parser.add_argument("--alone-cap", type=int, default=16)
    parser.add_argument("--init", default="default", choices=["default", "uniform"],
                        help="LeNet's weights: PyTorch's initialisation (an untrained FL model) or DLG's U(-0.5, 0.5)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--set", action="append", default=[], metavar="ATTACK.KEY=VALUE")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--local-steps", type=int, default=0, help="round part: FedAvg with this many local steps "
                        "(longer rounds, above Flower's 0.1 s polling); 0: FedSGD")
    parser.add_argument("--batch-size", type=int, default=1, help="round part: the clients' batch size")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--attack", default="idlg", help="the attack dispatched per update in the round part")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"round part: some of {', '.join(ARMS)}")
    parser.add_argument("--out", default="/tmp/fedleak-throughput", help="run directories of the round part")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--jsonl", type=Path, help="append each result as a JSON line as soon as it is measured")
    args = parser.parse_args()
    print(machine(), f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}", flush=True)
    result = attacks_benchmark(args) if args.part == "attacks" else round_benchmark(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
