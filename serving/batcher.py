"""Dynamic batching across concurrent requests: one bounded queue, one worker thread.

A batch starts with the oldest waiting item and takes more while they fit the token budget,
waiting at most ``max_wait`` for them; it runs on the worker thread (so rankers never run twice
at once), and each item's future gets its share. A full queue refuses at once (the app answers
429 with Retry-After); an item whose deadline passed while it queued is not run.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    pass


class DeadlineExceeded(Exception):
    pass


@dataclass
class _Item:
    payload: Any
    cost: int
    deadline: float
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Timing:
    queue_ms: float
    inference_ms: float
    batch_items: int
    batch_cost: int


class Batcher:
    def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], max_cost: int, max_wait_s: float,
                 max_queue: int, executor: ThreadPoolExecutor, on_batch: Callable[[int, int], None] | None = None):
        self.run_batch, self.max_cost, self.max_wait_s = run_batch, max_cost, max_wait_s
        self.max_queue, self.executor, self.on_batch = max_queue, executor, on_batch
        self._items: deque[_Item] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = 0

    @property
    def depth(self) -> int:
        return len(self._items)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, payload: Any, cost: int, deadline: float) -> tuple[Any, Timing]:
        if len(self._items) >= self.max_queue:
            raise QueueFull()
        fut = asyncio.get_running_loop().create_future()
        self._items.append(_Item(payload, max(1, cost), deadline, fut))
        self._ready.set()
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            batch = [self._items.popleft()]
            cost = batch[0].cost
            until = time.perf_counter() + self.max_wait_s
            while cost < self.max_cost:
                if self._items:
                    if cost + self._items[0].cost > self.max_cost:
                        break
                    item = self._items.popleft()
                    batch.append(item)
                    cost += item.cost
                    continue
                left = until - time.perf_counter()
                if left <= 0:
                    break
                self._ready.clear()
                try:
                    await asyncio.wait_for(self._ready.wait(), left)
                except asyncio.TimeoutError:
                    break
            now = time.perf_counter()
            live = []
            for item in batch:
                if item.future.cancelled():
                    continue
                if now > item.deadline:
                    item.future.set_exception(DeadlineExceeded())
                else:
                    live.append(item)
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [i.payload for i in live])
            except Exception as e:         # the batch's requests get the error; the loop keeps serving
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            took = (time.perf_counter() - started) * 1000
            self.batches += 1
            if self.on_batch:
                self.on_batch(len(live), sum(i.cost for i in live))
            for item, result in zip(live, results):
                if not item.future.done():
                    item.future.set_result((result, Timing(round((started - item.queued_at) * 1000, 3),
                                                           round(took, 3), len(live), sum(i.cost for i in live))))
