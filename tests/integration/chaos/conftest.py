"""The chaos test scores with the detector tests' champion (trained once per session)."""

from tests.integration.detection.conftest import champion

__all__ = ["champion"]
