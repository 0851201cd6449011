"""aedfast: fast self-distilled masked auto-encoder video anomaly detection."""

__version__ = "0.1.0"
