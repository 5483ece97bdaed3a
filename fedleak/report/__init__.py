"""Reading results back: per-round tables (comparisons and HTML reports come later)."""

from fedleak.report.tables import round_table

__all__ = ["round_table"]
