import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from missions.v1 import mission_pb2 as _mission_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_CREATED: _ClassVar[EventType]
    EVENT_TYPE_STARTED: _ClassVar[EventType]
    EVENT_TYPE_PROGRESS: _ClassVar[EventType]
    EVENT_TYPE_COMPLETED: _ClassVar[EventType]
    EVENT_TYPE_FAILED: _ClassVar[EventType]
    EVENT_TYPE_RETRYING: _ClassVar[EventType]
    EVENT_TYPE_CANCELLED: _ClassVar[EventType]
    EVENT_TYPE_DEAD_LETTERED: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_CREATED: EventType
EVENT_TYPE_STARTED: EventType
EVENT_TYPE_PROGRESS: EventType
EVENT_TYPE_COMPLETED: EventType
EVENT_TYPE_FAILED: EventType
EVENT_TYPE_RETRYING: EventType
EVENT_TYPE_CANCELLED: EventType
EVENT_TYPE_DEAD_LETTERED: EventType

class MissionEvent(_message.Message):
    __slots__ = ("id", "sequence", "mission_id", "type", "time", "source", "attempt", "correlation_id", "meta", "mission_type", "created", "started", "progress", "completed", "failed", "retrying", "cancelled", "dead_lettered")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MISSION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    MISSION_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RETRYING_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    id: str
    sequence: int
    mission_id: str
    type: EventType
    time: _timestamp_pb2.Timestamp
    source: str
    attempt: int
    correlation_id: str
    meta: _containers.ScalarMap[str, str]
    mission_type: str
    created: CreatedEvent
    started: StartedEvent
    progress: ProgressEvent
    completed: CompletedEvent
    failed: FailedEvent
    retrying: RetryingEvent
    cancelled: CancelledEvent
    dead_lettered: DeadLetteredEvent
    def __init__(self, id: _Optional[str] = ..., sequence: _Optional[int] = ..., mission_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., attempt: _Optional[int] = ..., correlation_id: _Optional[str] = ..., meta: _Optional[_Mapping[str, str]] = ..., mission_type: _Optional[str] = ..., created: _Optional[_Union[CreatedEvent, _Mapping]] = ..., started: _Optional[_Union[StartedEvent, _Mapping]] = ..., progress: _Optional[_Union[ProgressEvent, _Mapping]] = ..., completed: _Optional[_Union[CompletedEvent, _Mapping]] = ..., failed: _Optional[_Union[FailedEvent, _Mapping]] = ..., retrying: _Optional[_Union[RetryingEvent, _Mapping]] = ..., cancelled: _Optional[_Union[CancelledEvent, _Mapping]] = ..., dead_lettered: _Optional[_Union[DeadLetteredEvent, _Mapping]] = ...) -> None: ...

class CreatedEvent(_message.Message):
    __slots__ = ("mission",)
    MISSION_FIELD_NUMBER: _ClassVar[int]
    mission: _mission_pb2.Mission
    def __init__(self, mission: _Optional[_Union[_mission_pb2.Mission, _Mapping]] = ...) -> None: ...

class StartedEvent(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class ProgressEvent(_message.Message):
    __slots__ = ("fraction", "message")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    message: str
    def __init__(self, fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class CompletedEvent(_message.Message):
    __slots__ = ("result", "duration")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    result: _struct_pb2.Struct
    duration: _duration_pb2.Duration
    def __init__(self, result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FailedEvent(_message.Message):
    __slots__ = ("error", "will_retry", "duration")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    error: _mission_pb2.MissionError
    will_retry: bool
    duration: _duration_pb2.Duration
    def __init__(self, error: _Optional[_Union[_mission_pb2.MissionError, _Mapping]] = ..., will_retry: _Optional[bool] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RetryingEvent(_message.Message):
    __slots__ = ("error", "delay", "next_attempt_time", "mission")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    MISSION_FIELD_NUMBER: _ClassVar[int]
    error: _mission_pb2.MissionError
    delay: _duration_pb2.Duration
    next_attempt_time: _timestamp_pb2.Timestamp
    mission: _mission_pb2.Mission
    def __init__(self, error: _Optional[_Union[_mission_pb2.MissionError, _Mapping]] = ..., delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mission: _Optional[_Union[_mission_pb2.Mission, _Mapping]] = ...) -> None: ...

class CancelledEvent(_message.Message):
    __slots__ = ("reason", "cancelled_by")
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    reason: str
    cancelled_by: str
    def __init__(self, reason: _Optional[str] = ..., cancelled_by: _Optional[str] = ...) -> None: ...

class DeadLetteredEvent(_message.Message):
    __slots__ = ("reason", "last_error", "mission")
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    MISSION_FIELD_NUMBER: _ClassVar[int]
    reason: str
    last_error: _mission_pb2.MissionError
    mission: _mission_pb2.Mission
    def __init__(self, reason: _Optional[str] = ..., last_error: _Optional[_Union[_mission_pb2.MissionError, _Mapping]] = ..., mission: _Optional[_Union[_mission_pb2.Mission, _Mapping]] = ...) -> None: ...
