"""owl: open weights, local."""

__version__ = "0.1.0"
