"""shopsentry: e-commerce purchase analytics with real-time fraud detection."""

__version__ = "0.1.0"
