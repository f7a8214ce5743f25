"""Twilio's queues for the call tree, sized for the worst day.

Twilio makes a queue the first time a call is `<Enqueue>`d in it, with room for 1,000 callers
(100 on older accounts), and queues persist. Past that, each caller it refuses comes back to
the `<Enqueue>` action at once with QueueResult `queue-full` (error 14207): on a hack day, when
the security queue is longest. Twilio allows a queue up to 5,000, set through its REST API:
`ivr serve` makes the tree's queues that size before it serves, where it has the account,
and each instance's timed job (`Hotline.size_queues`) a queue a reload adds, or one Twilio
failed to size at the start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

TWILIO_MAX_QUEUE_SIZE = 5000


class TwilioQueues(Protocol):
    """The part of twilio.rest.Client used here (queues.stream, .create, queues(sid).update)."""

    @property
    def queues(self) -> Any: ...


def size_queues(
    client: TwilioQueues, names: Iterable[str], size: int = TWILIO_MAX_QUEUE_SIZE
) -> list[str]:
    """Each of the queues `names` made to hold `size` callers: resized where Twilio's is
    smaller, made where Twilio has none by that name yet. What was done, a line per queue."""
    wanted = sorted(set(names))
    found: set[str] = set()
    done = []
    for queue in client.queues.stream():
        name = queue.friendly_name
        if name not in wanted:
            continue
        found.add(name)
        if (queue.max_size or 0) < size:
            client.queues(queue.sid).update(max_size=size)
            done.append(f"{name}: held {queue.max_size} callers, now {size}")
        else:
            done.append(f"{name}: holds {queue.max_size} callers")
    for name in wanted:
        if name not in found:
            client.queues.create(friendly_name=name, max_size=size)
            done.append(f"{name}: made, to hold {size} callers")
    return done
