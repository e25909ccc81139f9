"""Processors and the pipeline that links them.

A processor does one job: it receives a frame with `process`, and passes frames on with
`push` (downstream to the next processor, upstream to the previous one). Frames a processor
does not handle go through unchanged, so each processor only names the frames it cares about.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from voice.frames import Direction, Frame

log = logging.getLogger(__name__)


class FrameProcessor:
    def __init__(self) -> None:
        self._next: FrameProcessor | None = None
        self._previous: FrameProcessor | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        """Handle one frame; the default passes it on in the direction it was going."""
        await self.push(frame, direction)

    async def push(self, frame: Frame, direction: Direction = Direction.DOWNSTREAM) -> None:
        target = self._next if direction is Direction.DOWNSTREAM else self._previous
        if target is not None:
            await target.process(frame, direction)

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
        await self.processors[0].process(frame, Direction.DOWNSTREAM)

    async def close(self) -> None:
        for processor in self.processors:
            try:
                await processor.close()
            except Exception:  # one processor failing to close must not keep the others open
                log.exception("closing %s failed", type(processor).__name__)
