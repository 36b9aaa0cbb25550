"""mission-worker: consumes the work queue and runs missions with pluggable handlers.

Handler authors import from here::

    from worker_service import InvalidPayload, MissionContext, NonRetryableError, handler
"""

from missions.errors import InvalidPayload, NonRetryableError
from worker_service.context import MissionContext
from worker_service.handlers import handler

__all__ = ["InvalidPayload", "MissionContext", "NonRetryableError", "handler"]
