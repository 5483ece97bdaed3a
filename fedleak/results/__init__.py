"""What a run leaves behind and how it is read back: the store and its per-round tables."""

from fedleak.results.store import ResultStore, check_out_dir, make_run_dir, new_run_dir
from fedleak.results.tables import round_table

__all__ = ["ResultStore", "check_out_dir", "make_run_dir", "new_run_dir", "round_table"]
