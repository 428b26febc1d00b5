"""ofa-platform: train once-for-all supernets on Ray, search them for many targets, and
account for what every run cost in MLflow."""

__all__ = ["__version__"]
__version__ = "0.1.0"
