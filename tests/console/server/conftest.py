"""The service's tests run a real ControlPlane in the lifecycle tests' world."""

from tests.console.lifecycle.conftest import clock, world

__all__ = ["clock", "world"]  # fixtures
