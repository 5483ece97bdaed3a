"""An example fedleak plugin: the ``tiny-cnn`` model and the ``stripes`` dataset."""
