"""The app's ServerApp: Flower's FedAvg, with fedleak attached (the lines marked ``# fedleak``)."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import fedleak  # fedleak
from attach_example.task import MEAN, SETTINGS, STD, Net, setting

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = {key: setting(context.run_config, key) for key in SETTINGS}
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0)
    strategy = fedleak.attach(strategy, model=Net, image_shape=(1, 8, 8), num_classes=10, mean=MEAN, std=STD,  # fedleak
                              attacks=["idlg"], store=str(config["store"]),
                              batch_size=int(config["batch-size"]), local_steps=int(config["local-steps"]))
    strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()),
                   num_rounds=int(config["num-server-rounds"]), train_config=ConfigRecord({"lr": float(config["lr"])}))
