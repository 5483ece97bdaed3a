"""The app's ClientApp, in the shape of Flower's PyTorch quickstart."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

import fedleak  # fedleak (lab only)
from attach_example.task import MEAN, STD, Digits, Net, load_data, setting, train

app = ClientApp(mods=[fedleak.client_mod])  # fedleak (lab only): the samples trained on go to the server


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    partition_id = int(context.node_config["partition-id"])
    dataset = Digits(partition_id, int(context.node_config["num-partitions"]))
    if setting(context.run_config, "lab"):  # fedleak (lab only): record what this client trains on
        dataset = fedleak.recorded(dataset, MEAN, STD, image_key="img", label_key="label")
    loader = load_data(dataset, int(setting(context.run_config, "batch-size")), seed=partition_id)
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    steps = int(setting(context.run_config, "local-steps"))
    loss, examples = train(net, loader, steps, float(msg.content["config"]["lr"]))
    content = RecordDict({"arrays": ArrayRecord(net.state_dict()),
                          "metrics": MetricRecord({"train_loss": loss, "num-examples": examples})})
    return Message(content=content, reply_to=msg)
