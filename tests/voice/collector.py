"""The end of a test pipeline: keeps every frame that reaches it."""
from __future__ import annotations

from voice.frames import Direction, Frame, Transcript
from voice.pipeline import FrameProcessor


class Collector(FrameProcessor):
    def __init__(self, pass_on: bool = False) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.pass_on = pass_on  # True: in the middle of a pipeline, frames go on as they came

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.frames.append(frame)
        if self.pass_on:
            await self.push(frame, direction)

    def of(self, kind: type) -> list[Frame]:
        return [frame for frame in self.frames if isinstance(frame, kind)]

    def finals(self) -> list[str]:
        return [frame.text for frame in self.of(Transcript) if frame.final]  # type: ignore[attr-defined]
