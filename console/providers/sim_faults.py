"""What can go wrong in the sim cloud on purpose: the faults a test or the demo plans ahead.

Faults about a launch (no capacity, an error, a lost answer, boots that never finish) are
planned here and taken by the next launches. Faults that strike an instance already there
(it vanishes, its spot capacity is reclaimed) are the provider's own methods, because they act
at once: :meth:`SimProvider.vanish` and :meth:`SimProvider.interrupt`.
"""

from __future__ import annotations

from collections import deque

from tidectl.console.providers.base import CapacityError, ProviderError, UnavailableError

__all__ = ["SimCloudFaults"]


class SimCloudFaults:
    """A plan of launch faults. Plain data: the provider asks it at each launch."""

    def __init__(self) -> None:
        # (instance type, zone); zone None: every zone.
        self._no_capacity: set[tuple[str, str | None]] = set()
        self._launch_errors: deque[ProviderError] = deque()
        self._lost_answers = 0
        self._stalled_boots = 0

    # -- planning -------------------------------------------------------------------------

    def no_capacity(self, instance_type: str, zone: str | None = None) -> None:
        """Launches of ``instance_type`` (in ``zone``, or in any zone) raise CapacityError
        until :meth:`restore_capacity`."""
        self._no_capacity.add((instance_type, zone))

    def restore_capacity(self, instance_type: str, zone: str | None = None) -> None:
        """Undo :meth:`no_capacity` for exactly this type and zone (None: the any-zone one)."""
        self._no_capacity.discard((instance_type, zone))

    def fail_launches(self, error: ProviderError, times: int = 1) -> None:
        """The next ``times`` launches raise ``error`` (a QuotaError, AuthError, ...) and start
        nothing."""
        self._launch_errors.extend([error] * _at_least_one(times, "times"))

    def lose_launch_answers(self, times: int = 1) -> None:
        """The next ``times`` launches start their instances, then raise UnavailableError, as
        a call whose answer was lost would: only a retry with the same token, or describe,
        finds them."""
        self._lost_answers += _at_least_one(times, "times")

    def stall_boots(self, count: int = 1) -> None:
        """The next ``count`` instances launched stay pending for ever (until terminated)."""
        self._stalled_boots += _at_least_one(count, "count")

    def clear(self) -> None:
        """Forget every planned fault."""
        self._no_capacity.clear()
        self._launch_errors.clear()
        self._lost_answers = 0
        self._stalled_boots = 0

    # -- taken by the provider ------------------------------------------------------------

    def launch_error(self, instance_type: str, zone: str) -> ProviderError | None:
        """The error the launch about to happen must raise, if any (taken once)."""
        if self._launch_errors:
            return self._launch_errors.popleft()
        if (instance_type, zone) in self._no_capacity or (instance_type, None) in self._no_capacity:
            return CapacityError(
                f"the sim cloud has no {instance_type} capacity in {zone} right now; try another "
                "zone or instance type, or try again later.",
                instance_type=instance_type,
                zone=zone,
                code="InsufficientInstanceCapacity",
            )
        return None

    def take_lost_answer(self) -> UnavailableError | None:
        """The error that hides a launch's answer, when one is planned (taken once)."""
        if self._lost_answers == 0:
            return None
        self._lost_answers -= 1
        return UnavailableError(
            "the sim cloud did not answer the launch (its answer was lost); instances may have "
            "started: retry with the same token, or describe by tags.",
            code="RequestTimeout",
        )

    def take_stall(self) -> bool:
        """Whether the instance about to boot must never finish booting (taken once)."""
        if self._stalled_boots == 0:
            return False
        self._stalled_boots -= 1
        return True


def _at_least_one(value: int, name: str) -> int:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value
