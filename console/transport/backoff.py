"""Reconnect delays: capped exponential backoff with full jitter.

Full jitter (a uniform draw below the cap) spreads a thousand nodes that failed together —
a switch reboot, a control-plane restart — so they do not all knock on sshd at once again.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, minimum_s: float, maximum_s: float, rng: random.Random | None = None
    ) -> None:
        if not 0 < minimum_s <= maximum_s:
            raise ValueError(f"need 0 < minimum ({minimum_s}) <= maximum ({maximum_s})")
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        cap = min(self.maximum_s, self.minimum_s * (2.0**self.failures))
        self.failures += 1
        return self.minimum_s + self._rng.uniform(0.0, max(0.0, cap - self.minimum_s))

    def reset(self) -> None:
        self.failures = 0
