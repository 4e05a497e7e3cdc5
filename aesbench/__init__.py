"""aesbench: benchmark image aesthetics assessment models on the standard protocols."""

__version__ = "0.1.0"
