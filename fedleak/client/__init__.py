"""The honest client, without Flower: local training and one round's whole job (``local_round``)."""
