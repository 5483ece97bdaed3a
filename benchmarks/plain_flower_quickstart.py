"""The quickstart's federation in plain Flower, without fedleak: the floor any Flower simulation pays.

4 clients on scikit-learn's 8×8 digits (read from its CSV, as fedleak does), a LeNet-sized CNN,
FedSGD with batch 1 (one SGD step at lr 0.1 per client and round), 3 rounds of Flower's FedAvg
(Message API) with the global model's accuracy on 500 test images after each: what
``scenarios/quickstart.toml`` trains, without the adversary, its attacks and its store.
Flower starts Ray itself, with its own defaults. ``benchmarks/startup.py`` runs this beside fedleak.

    python benchmarks/plain_flower_quickstart.py
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from torch import nn

CLIENTS, ROUNDS, LR, TEST = 4, 3, 0.1, 500


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(N, 1, 8, 8)`` in [0, 1] and labels, without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.float32)
    return torch.from_numpy(table[:, :64] / 16).view(-1, 1, 8, 8), torch.from_numpy(table[:, 64]).long()


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 12, 5, padding=2), nn.Sigmoid(), nn.Conv2d(12, 12, 5, padding=2), nn.Sigmoid(),
                         nn.Flatten(), nn.Linear(12 * 64, 10))


client_app = ClientApp()


@client_app.train()
def train(message: Message, context: Context) -> Message:
    images, labels = digits()
    partition = int(context.node_config["partition-id"])
    server_round = int(message.content["config"]["server-round"])
    index = (partition * 97 + server_round) % (len(labels) - TEST)
    net = model()
    net.load_state_dict(message.content["arrays"].to_torch_state_dict())
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    loss = nn.functional.cross_entropy(net(images[index:index + 1]), labels[index:index + 1])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    content = RecordDict({"arrays": ArrayRecord(net.state_dict()),
                          "metrics": MetricRecord({"train_loss": loss.item(), "num-examples": 1})})
    return Message(content=content, reply_to=message)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    images, labels = digits()
    test_images, test_labels = images[-TEST:], labels[-TEST:]

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        net = model()
        net.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            accuracy = float((net(test_images).argmax(1) == test_labels).float().mean())
        print(f"round {server_round}: test accuracy {accuracy:.1%}", flush=True)
        return MetricRecord({"accuracy": accuracy})

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=CLIENTS)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model().state_dict()), num_rounds=ROUNDS,
                   evaluate_fn=evaluate)


if __name__ == "__main__":
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=CLIENTS,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    print("done", flush=True)
