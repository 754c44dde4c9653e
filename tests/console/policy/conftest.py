"""The policy tests run in the lifecycle tests' world (store, sim cloud, sim scheduler)."""

from tests.console.lifecycle.conftest import clock, world

__all__ = ["clock", "world"]  # fixtures
