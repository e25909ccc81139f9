"""Processors and the pipeline that links them.

A processor does one job: it receives a frame with `process`, and passes frames on with
`push` (downstream to the next processor, upstream to the previous one). Frames a processor
does not handle go through unchanged, so each processor only names the frames it cares about.

A processor whose work waits on a model (`queued = True`: the recogniser decoding a frame, the
synthesiser rendering a reply) takes its downstream frames through a queue of its own, worked by
its own task, as in Pipecat: the processors before it go on at once (speech detection never waits
for a decode, the turn taking never waits for a render), frames keep their order, and system
frames (`Interruption`) overtake the queue. An interruption drops the queued frames its type says
it drops (speech not yet said: `Frame.dropped_on_interruption`); a hand-over, a hang-up or a
mandatory disclosure keeps its place. A `Hangup` keeps its place too: words said just before it (a
confirmation) are still understood; `close` waits for the queues (at most DRAIN_SECONDS), then
cancels what is left. The synthesiser alone drops its work at a `Hangup` (nobody is left to hear
a reply: voice/processors.py SpeechSynthesis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from voice.frames import Direction, Frame, SystemFrame

log = logging.getLogger(__name__)
DRAIN_SECONDS = 10.0  # a decode stuck longer than this at the end of a call is abandoned


class FrameProcessor:
    queued = False  # True: downstream frames go through this processor's own queue and task

    def __init__(self) -> None:
        self._next: FrameProcessor | None = None
        self._previous: FrameProcessor | None = None
        self._inbox: asyncio.Queue[tuple[Frame, Direction]] | None = None
        self._inbox_worker: asyncio.Task[None] | None = None
        self._inbox_count = 0  # frames queued or in hand

    async def process(self, frame: Frame, direction: Direction) -> None:
        """Handle one frame; the default passes it on in the direction it was going."""
        await self.push(frame, direction)

    async def push(self, frame: Frame, direction: Direction = Direction.DOWNSTREAM) -> None:
        target = self._next if direction is Direction.DOWNSTREAM else self._previous
        if target is not None:
            await target.receive(frame, direction)

    async def receive(self, frame: Frame, direction: Direction) -> None:
        """A frame from a neighbour: handled now, or queued for this processor's own task."""
        if not self.queued or direction is Direction.UPSTREAM or isinstance(frame, SystemFrame):
            if isinstance(frame, SystemFrame) and frame.interrupts:
                self._drop_interrupted()
            await self.process(frame, direction)
            return
        if self._inbox is None:
            self._inbox = asyncio.Queue()
        if self._inbox_worker is None:
            self._inbox_worker = asyncio.create_task(self._work(self._inbox), name=f"{type(self).__name__}-queue")
        self._inbox_count += 1
        self._inbox.put_nowait((frame, direction))

    async def _work(self, queue: asyncio.Queue[tuple[Frame, Direction]]) -> None:
        while True:
            frame, direction = await queue.get()
            try:
                await self.process(frame, direction)
            except asyncio.CancelledError:
                raise
            except Exception:  # one frame that fails must not stop the frames after it
                log.exception("%s failed on %s", type(self).__name__, type(frame).__name__)
            finally:
                self._inbox_count -= 1
                queue.task_done()

    def _drop_interrupted(self) -> None:
        """The queued frames an interruption drops (speech not yet said); the rest keep their order."""
        queue = self._inbox
        if queue is None or queue.empty():
            return
        waiting = [queue.get_nowait() for _ in range(queue.qsize())]
        for frame, direction in waiting:
            if frame.dropped_on_interruption:
                self._inbox_count -= 1
            else:
                queue.put_nowait((frame, direction))
            queue.task_done()  # each get balanced; a frame put back counts again

    async def _stop_work(self) -> None:
        """Drop the queued frames and cancel the one in hand."""
        worker, self._inbox_worker = self._inbox_worker, None
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        queue = self._inbox
        while queue is not None and not queue.empty():
            queue.get_nowait()
            self._inbox_count -= 1
            queue.task_done()

    @property
    def busy(self) -> bool:
        return self._inbox_count > 0

    async def idle(self) -> None:
        """Until every frame queued so far has been handled."""
        if self._inbox is not None and self._inbox_worker is not None:
            await self._inbox.join()

    async def close(self) -> None:
        """Release tasks and resources; called once when the call ends."""


class Pipeline:
    """Processors in order, caller side first. Frames enter at either end."""

    def __init__(self, processors: Sequence[FrameProcessor]) -> None:
        if not processors:
            raise ValueError("a pipeline needs at least one processor")
        self.processors = list(processors)
        for earlier, later in zip(self.processors, self.processors[1:], strict=False):
            earlier._next = later
            later._previous = earlier

    async def send(self, frame: Frame) -> None:
        """A frame from the caller's side."""
        await self.processors[0].receive(frame, Direction.DOWNSTREAM)

    async def idle(self) -> None:
        """Until no processor has a frame left to handle, including those queued meanwhile by
        the ones before it."""
        for _ in range(1000):  # a bound: each round only finds what the previous round queued
            for processor in self.processors:
                await processor.idle()
            if not any(processor.busy for processor in self.processors):
                return

    async def close(self) -> None:
        try:  # what was queued before the hang-up is handled (a confirmation said, then gone)
            await asyncio.wait_for(self.idle(), DRAIN_SECONDS)
        except TimeoutError:
            log.warning("a processor's queue did not drain within %s s at the end of the call", DRAIN_SECONDS)
        for processor in self.processors:
            try:
                await processor._stop_work()
                await processor.close()
            except Exception:  # one processor failing to close must not keep the others open
                log.exception("closing %s failed", type(processor).__name__)
