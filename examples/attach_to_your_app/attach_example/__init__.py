"""A plain Flower PyTorch app with fedleak attached (see README.md)."""
