"""The names client and server agree on in a training reply (Flower-free, so the client's
round and the server's checks share them without importing Flower)."""

# Reply metric keys the adversarial server reads; "num-examples" is Flower's weighting key.
NUM_EXAMPLES, PARTITION_ID, LOCAL_STEPS, LR, BATCH_SIZE, TRAIN_LOSS = (
    "num-examples", "partition-id", "local-steps", "lr", "batch-size", "train-loss",
)

# A reply whose arrays are a quantizer's encoding of Δ names it here (no record: weights).
WIRE, ENCODING = "wire", "encoding"

# A lab client's side channel (fedleak.client_mod): the samples it trained on, as one ArrayRecord
# of [0, 1] images and their labels, which the server stores and removes before aggregation.
TRUTH, TRUTH_IMAGES, TRUTH_LABELS = "fedleak-truth", "images", "labels"

# The server's fedleak code (fedleak.core.fingerprint) in every train config it sends.
FEDLEAK_CODE = "fedleak-code"
