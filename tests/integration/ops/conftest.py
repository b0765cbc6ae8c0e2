"""The ops tests reuse the detector tests' session champion (one trained model)."""

from tests.integration.detection.conftest import champion

__all__ = ["champion"]
