"""LeifDB: a distributed, consistent, fault-tolerant key-value database."""

__version__ = "0.3.0"
