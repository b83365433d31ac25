"""collector: a single-process syslog and JSON-lines collector."""

__version__ = "0.1.0"
