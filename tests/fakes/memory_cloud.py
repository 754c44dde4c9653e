"""A cloud in memory that keeps the Provider contract, for tests that run the lifecycle engine
hundreds of times (a Hypothesis state machine): no SSH servers, no threads, no sleeps.

The sim provider (``console/providers/sim.py``) boots a real SSH server per instance, which is
right for the engine's own tests and far too slow for hundreds of generated runs. This fake
keeps what the engine relies on, the way EC2 and the sim cloud do:

* the tags are the request's, set at launch and never changed;
* a launch is all or none, and idempotent by token: the same token with the same request
  returns the instances the first call started, never a second set; with another request it
  raises InvalidRequestError (EC2's IdempotentParameterMismatch);
* terminate is idempotent (unknown and ended ids are fine) and is not itself confirmation: the
  instance is ``shutting-down`` until a later describe shows it ``terminated``;
* describe returns every instance carrying all the tags, in any state, terminated ones too
  (until a test makes the cloud forget one, as clouds forget old instances).

Time in this cloud moves only with describe: each call first moves on every instance an earlier
describe already showed in a passing state (pending → running, shutting-down → terminated, a
spot instance under an interruption notice → shutting-down), so the engine sees every state at
least once and a test decides the order of everything by the order of its calls.

Faults a test plans: no capacity for an instance type (in a zone, or in all), room for only so
many more of a type, errors for the next launches, lost launch answers, boots that never end,
a "crash" (any exception, BaseException too) raised after a launch started its instances and
before it answered, and other work run in that same moment (a slow answer).
:meth:`MemoryCloud.vanish` and :meth:`MemoryCloud.interrupt` strike an instance that is there.
``on_stop`` hears every instance that stops running, and why, at that moment: a test uses it to
take the node's hardware away from its scheduler.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from tidectl.console.providers.base import (
    CapacityError,
    Instance,
    InstanceState,
    InvalidRequestError,
    LaunchRequest,
    ProviderError,
    UnavailableError,
)

__all__ = ["MEMORY_PRICES", "MemoryCloud", "StopCause"]

#: On-demand USD per instance-hour; a type not listed has no known price (None).
MEMORY_PRICES: Final[Mapping[str, float]] = {"m.gpu8": 24.0, "m.gpu8b": 26.0}
SPOT_DISCOUNT: Final = 0.4

#: Why an instance stopped running: asked by the engine, or struck by the test.
StopCause = Literal["terminate", "vanish", "interrupt"]

_S = InstanceState
#: Where each state may go next (EC2's, without stop/start, which no tidectl code asks for).
_MOVES: Final[Mapping[InstanceState, frozenset[InstanceState]]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.SHUTTING_DOWN}),
    _S.RUNNING: frozenset({_S.SHUTTING_DOWN}),
    _S.SHUTTING_DOWN: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}
_ENDING = frozenset({_S.SHUTTING_DOWN, _S.TERMINATED})


@dataclass(slots=True, eq=False)
class _Instance:
    instance_id: str
    request: LaunchRequest
    zone: str
    launched_at: datetime
    state: InstanceState = InstanceState.PENDING
    shown: bool = False  # a describe has listed it in its current state
    stalled: bool = False  # its boot never completes
    interruption: bool = False  # its spot capacity is being reclaimed
    forget: bool = False  # describe drops it once terminated

    def move(self, to: InstanceState) -> None:
        if to not in _MOVES[self.state]:
            raise RuntimeError(
                f"memory instance {self.instance_id} cannot go from {self.state} to {to}; this "
                "is a bug in the memory cloud"
            )
        self.state = to
        self.shown = False

    def snapshot(self) -> Instance:
        return Instance(
            instance_id=self.instance_id,
            state=self.state,
            instance_type=self.request.instance_type,
            zone=self.zone,
            launched_at=self.launched_at,
            tags=self.request.tags,
            private_ip=None if self.state is _S.TERMINATED else "10.0.0.1",
            spot=self.request.spot,
            interruption=self.interruption,
        )


class MemoryCloud:
    """An in-memory :class:`~tidectl.console.providers.base.Provider` with planned faults.

    ``clock`` stamps launch times (wall-clock seconds); ``on_stop(instance_id, cause)`` is
    called the moment an instance leaves pending or running.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        prices: Mapping[str, float] = MEMORY_PRICES,
        on_stop: Callable[[str, StopCause], None] | None = None,
    ) -> None:
        self._clock = clock
        self._prices = dict(prices)
        self._on_stop = on_stop
        self._instances: dict[str, _Instance] = {}  # every one ever started, forgotten too
        self._launches: dict[str, tuple[LaunchRequest, tuple[str, ...]]] = {}  # by token
        self._next_id = 1
        self._no_capacity: set[tuple[str, str | None]] = set()
        self._room: dict[str, int] = {}
        self._errors: deque[ProviderError] = deque()
        self._lost_answers = 0
        self._stalls = 0
        self._crash: tuple[int, BaseException] | None = None
        self._meanwhile: Callable[[LaunchRequest], Awaitable[None]] | None = None
        #: Every launch call, and every terminate call's ids, in order (for tests to count).
        self.launch_calls: list[LaunchRequest] = []
        self.terminate_calls: list[tuple[str, ...]] = []

    # -- the Provider protocol --------------------------------------------------------------

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        self.launch_calls.append(request)
        earlier = self._launches.get(request.token)
        if earlier is not None:
            if earlier[0] != request:
                raise InvalidRequestError(
                    f"the launch token {request.token!r} was already used for a different "
                    "request; a new request needs a new token.",
                    code="IdempotentParameterMismatch",
                )
            return [self._instances[i].snapshot() for i in earlier[1]]
        zone = request.zone or f"{request.region}-a"
        self._refuse(request, zone)
        started = [self._start(request, zone) for _ in range(request.count)]
        self._launches[request.token] = (request, tuple(i.instance_id for i in started))
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile(request)
        if self._lost_answers:
            self._lost_answers -= 1
            raise UnavailableError(
                "the memory cloud lost the launch's answer; instances may have started: retry "
                "with the same token, or describe by tags.",
                code="RequestTimeout",
            )
        if self._crash is not None:
            left, error = self._crash
            self._crash = (left - 1, error) if left > 1 else None
            if left == 1:
                raise error
        return [instance.snapshot() for instance in started]

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        if not tags:
            raise InvalidRequestError("describe needs at least one tag to filter by.")
        self._pass_time()
        wanted = dict(tags).items()
        listed = [
            instance
            for instance in self._instances.values()
            if wanted <= instance.request.tags.items()
            and not (instance.forget and instance.state is _S.TERMINATED)
        ]
        for instance in listed:
            instance.shown = True
        return [instance.snapshot() for instance in listed]

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        ids = tuple(dict.fromkeys(instance_ids))
        self.terminate_calls.append(ids)
        for instance_id in ids:
            instance = self._instances.get(instance_id)
            if instance is not None:
                self._stop(instance, "terminate")

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        price = self._prices.get(instance_type)
        if price is None or not spot:
            return price
        return round(price * SPOT_DISCOUNT, 4)

    # -- what the test sees, without time passing -------------------------------------------

    def instances(self) -> list[Instance]:
        """Every instance ever started, forgotten ones too, in launch order."""
        return [instance.snapshot() for instance in self._instances.values()]

    def instance(self, instance_id: str) -> Instance | None:
        found = self._instances.get(instance_id)
        return None if found is None else found.snapshot()

    # -- faults planned ahead ---------------------------------------------------------------

    def no_capacity(self, instance_type: str, zone: str | None = None) -> None:
        """Launches of the type (in ``zone``, or in every zone) raise CapacityError."""
        self._no_capacity.add((instance_type, zone))

    def restore_capacity(self, instance_type: str, zone: str | None = None) -> None:
        self._no_capacity.discard((instance_type, zone))

    def room_for(self, instance_type: str, count: int | None) -> None:
        """Only ``count`` more instances of the type may start (None: no limit); a launch of
        more is refused whole, as EC2 refuses a MinCount it cannot place."""
        if count is None:
            self._room.pop(instance_type, None)
        else:
            self._room[instance_type] = count

    def fail_launches(self, error: ProviderError, times: int = 1) -> None:
        """The next ``times`` new launches raise ``error`` and start nothing."""
        self._errors.extend([error] * times)

    def lose_launch_answers(self, times: int = 1) -> None:
        """The next ``times`` new launches start their instances, then raise
        UnavailableError: only the same token again, or describe, finds them."""
        self._lost_answers += times

    def stall_boots(self, count: int = 1) -> None:
        """The next ``count`` instances started stay pending for ever (until terminated)."""
        self._stalls += count

    def crash_on_launch(self, error: BaseException, nth: int = 1) -> None:
        """The ``nth`` launch from now that starts instances raises ``error`` instead of
        answering: the caller died between the cloud's yes and hearing it."""
        self._crash = (nth, error)

    def disarm_crash(self) -> None:
        self._crash = None

    def while_launching(self, work: Callable[[LaunchRequest], Awaitable[None]] | None) -> None:
        """The next launch that starts instances awaits ``work(request)`` before it answers:
        whatever else runs on the loop meanwhile sees the instances listed, their launch not
        yet heard of. None: no longer."""
        self._meanwhile = work

    # -- faults that strike now -------------------------------------------------------------

    def vanish(self, instance_id: str, *, forget: bool = False) -> None:
        """The instance ends without anyone asking (a host failure, another operator).
        ``forget``: describe stops listing it once it is terminated."""
        instance = self._known(instance_id)
        instance.forget = forget
        self._stop(instance, "vanish")

    def interrupt(self, instance_id: str, *, notice: bool = False) -> None:
        """The cloud reclaims this spot instance: at once, or (``notice``) marked interrupted
        while it still runs and shut down at a later describe. An ending one is left alone."""
        instance = self._known(instance_id)
        if not instance.request.spot:
            raise ValueError(f"{instance_id} is on-demand; only spot instances are interrupted")
        if instance.state in _ENDING:
            return
        instance.interruption = True
        if not notice:
            self._stop(instance, "interrupt")

    # -- inside -----------------------------------------------------------------------------

    def _refuse(self, request: LaunchRequest, zone: str) -> None:
        """Raise the error a new launch meets, if any: nothing is started then."""
        if self._errors:
            raise self._errors.popleft()
        kind = request.instance_type
        room = self._room.get(kind)
        if (
            (kind, zone) in self._no_capacity
            or (kind, None) in self._no_capacity
            or (room is not None and request.count > room)
        ):
            raise CapacityError(
                f"the memory cloud has no room for {request.count} {kind} in {zone}",
                instance_type=kind,
                zone=zone,
                code="InsufficientInstanceCapacity",
            )
        if room is not None:
            self._room[kind] = room - request.count

    def _start(self, request: LaunchRequest, zone: str) -> _Instance:
        # EC2's shape, numbered so that a run is the same each time it is replayed.
        instance_id = f"i-{self._next_id:017x}"
        self._next_id += 1
        instance = _Instance(instance_id, request, zone, datetime.fromtimestamp(self._clock(), UTC))
        if self._stalls:
            self._stalls -= 1
            instance.stalled = True
        self._instances[instance_id] = instance
        return instance

    def _pass_time(self) -> None:
        for instance in self._instances.values():
            if not instance.shown:
                continue
            if instance.state is _S.PENDING and not instance.stalled:
                instance.move(_S.RUNNING)
            elif instance.state is _S.RUNNING and instance.interruption:
                self._stop(instance, "interrupt")
            elif instance.state is _S.SHUTTING_DOWN:
                instance.move(_S.TERMINATED)

    def _stop(self, instance: _Instance, cause: StopCause) -> None:
        if instance.state in _ENDING:
            return
        instance.move(_S.SHUTTING_DOWN)
        if self._on_stop is not None:
            self._on_stop(instance.instance_id, cause)

    def _known(self, instance_id: str) -> _Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise ValueError(f"no memory instance {instance_id}") from None
