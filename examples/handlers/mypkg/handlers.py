"""The README's handler example: `cd examples/handlers && mission-worker --handlers mypkg.handlers`."""

from dataclasses import dataclass
from typing import Literal

from worker_service import InvalidPayload, MissionContext, handler


@dataclass(frozen=True)
class ResizeImage:
    url: str
    width: int = 640
    format: Literal["png", "jpeg"] = "png"

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise InvalidPayload("width", "must be positive")  # "payload.width: must be positive"


@handler("resize-image", payload=ResizeImage)
async def resize(ctx: MissionContext, payload: ResizeImage) -> dict[str, int]:
    await ctx.report_progress(0.5, "downloaded")  # a PROGRESS event
    if ctx.cancelled.is_set():  # timeout or shutdown in progress
        return {}
    return {"width": payload.width}  # the mission's result
