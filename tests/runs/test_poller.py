"""The shared poller's waiting: many subscribers timing out while events arrive never break it."""

from __future__ import annotations

import asyncio
import random

from app.runs.stream import Poller, StreamEvent
from tests.runs.helpers import run_in_thread


def test_waiters_timing_out_while_events_arrive_never_raise():
    rows = []

    def fetch(after: int, limit: int) -> list[StreamEvent]:
        return [StreamEvent(i, "step", {}) for i in rows if i > after][:limit]

    async def main() -> tuple[int, int]:
        poller = Poller(fetch, 0, interval=0.001)
        rng = random.Random(0)
        woke = timed_out = 0

        async def waiter() -> None:
            nonlocal woke, timed_out
            for _ in range(30):
                if await poller.wait_beyond(poller.cursor, rng.choice((0.0005, 0.001, 0.002, 0.01))):
                    woke += 1
                else:
                    timed_out += 1

        async def producer() -> None:
            for i in range(1, 400):
                rows.append(i)
                await poller._poll_once()
                await asyncio.sleep(rng.choice((0, 0.0005, 0.001)))

        await asyncio.gather(producer(), *(waiter() for _ in range(100)))
        return woke, timed_out

    woke, timed_out = run_in_thread(main)
    assert woke > 0 and timed_out > 0 and woke + timed_out == 100 * 30


def test_wait_beyond_returns_at_once_when_already_beyond_and_false_on_timeout():
    async def main() -> tuple[bool, bool]:
        poller = Poller(lambda after, limit: [], 5, interval=1)
        return await poller.wait_beyond(4, 0.01), await poller.wait_beyond(5, 0.01)

    assert run_in_thread(main) == (True, False)


def test_a_row_subscriber_behind_the_buffer_gets_each_runs_latest_row():
    """Dashboard rows are whole: one that fell behind the buffer catches up with the newest row of each run."""
    from collections import deque

    from app.runs.stream import RowPoller

    rows = [StreamEvent(i, "row", {"run_id": i % 3, "html": f"v{i}"}) for i in range(1, 21)]

    async def main() -> tuple[list, list]:
        poller = RowPoller(lambda after, limit: [e for e in rows if e.id > after], 0, interval=1)
        poller.buffer = deque(maxlen=5)  # rows 16..20 stay buffered
        await poller._poll_once()
        return await poller.after(3), await poller.after(17)

    behind, current = run_in_thread(main)
    assert [(e.data["run_id"], e.id) for e in behind] == [(0, 18), (1, 19), (2, 20)]
    assert [e.id for e in current] == [18, 19, 20]
