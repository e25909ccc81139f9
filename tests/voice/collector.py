"""The end of a test pipeline: keeps every frame that reaches it."""
from __future__ import annotations

from voice.frames import Direction, Frame, Transcript
from voice.pipeline import FrameProcessor


class Collector(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.frames.append(frame)

    def of(self, kind: type) -> list[Frame]:
        return [frame for frame in self.frames if isinstance(frame, kind)]

    def finals(self) -> list[str]:
        return [frame.text for frame in self.of(Transcript) if frame.final]  # type: ignore[attr-defined]
