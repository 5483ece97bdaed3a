"""The scenario: one TOML file that fully determines a run, validated before anything starts.

``schema.py`` is the :class:`Scenario` (components by name, each with its own config),
``loading.py`` reads files and ``--set`` overrides, ``preflight.py`` checks what needs
the data (the model runs on the dataset's images, every shard is non-empty).
"""

from fedleak.scenario.loading import apply_override, load_scenario, parse_scenario, read_toml, set_key
from fedleak.scenario.schema import Component, Scenario, first_error

__all__ = ["Component", "Scenario", "apply_override", "first_error", "load_scenario", "parse_scenario", "read_toml",
           "set_key"]
