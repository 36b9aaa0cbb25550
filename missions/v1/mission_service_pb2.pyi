import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from missions.v1 import events_pb2 as _events_pb2
from missions.v1 import mission_pb2 as _mission_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetMissionRequest(_message.Message):
    __slots__ = ("mission_id",)
    MISSION_ID_FIELD_NUMBER: _ClassVar[int]
    mission_id: str
    def __init__(self, mission_id: _Optional[str] = ...) -> None: ...

class GetMissionResponse(_message.Message):
    __slots__ = ("mission",)
    MISSION_FIELD_NUMBER: _ClassVar[int]
    mission: _mission_pb2.Mission
    def __init__(self, mission: _Optional[_Union[_mission_pb2.Mission, _Mapping]] = ...) -> None: ...

class ListMissionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states", "type")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[_mission_pb2.MissionState]
    type: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_mission_pb2.MissionState, str]]] = ..., type: _Optional[str] = ...) -> None: ...

class ListMissionsResponse(_message.Message):
    __slots__ = ("missions", "next_page_token")
    MISSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    missions: _containers.RepeatedCompositeFieldContainer[_mission_pb2.Mission]
    next_page_token: str
    def __init__(self, missions: _Optional[_Iterable[_Union[_mission_pb2.Mission, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitMissionRequest(_message.Message):
    __slots__ = ("type", "payload", "priority", "max_attempts", "timeout", "idempotency_key", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    type: str
    payload: _struct_pb2.Struct
    priority: _mission_pb2.Priority
    max_attempts: int
    timeout: _duration_pb2.Duration
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_mission_pb2.Priority, str]] = ..., max_attempts: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubmitMissionResponse(_message.Message):
    __slots__ = ("mission",)
    MISSION_FIELD_NUMBER: _ClassVar[int]
    mission: _mission_pb2.Mission
    def __init__(self, mission: _Optional[_Union[_mission_pb2.Mission, _Mapping]] = ...) -> None: ...

class CancelMissionRequest(_message.Message):
    __slots__ = ("mission_id", "reason")
    MISSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    mission_id: str
    reason: str
    def __init__(self, mission_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelMissionResponse(_message.Message):
    __slots__ = ("mission",)
    MISSION_FIELD_NUMBER: _ClassVar[int]
    mission: _mission_pb2.Mission
    def __init__(self, mission: _Optional[_Union[_mission_pb2.Mission, _Mapping]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("mission_ids", "types", "after_sequence")
    MISSION_IDS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    mission_ids: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[_events_pb2.EventType]
    after_sequence: int
    def __init__(self, mission_ids: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[_Union[_events_pb2.EventType, str]]] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.MissionEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.MissionEvent, _Mapping]] = ...) -> None: ...
