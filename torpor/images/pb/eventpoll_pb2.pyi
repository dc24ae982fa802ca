from torpor.images.pb import fown_pb2 as _fown_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventpollTfdEntry(_message.Message):
    __slots__ = ("id", "tfd", "events", "data", "dev", "inode", "pos")
    ID_FIELD_NUMBER: _ClassVar[int]
    TFD_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    id: int
    tfd: int
    events: int
    data: int
    dev: int
    inode: int
    pos: int
    def __init__(self, id: _Optional[int] = ..., tfd: _Optional[int] = ..., events: _Optional[int] = ..., data: _Optional[int] = ..., dev: _Optional[int] = ..., inode: _Optional[int] = ..., pos: _Optional[int] = ...) -> None: ...

class EventpollFileEntry(_message.Message):
    __slots__ = ("id", "flags", "fown", "tfd")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    TFD_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    fown: _fown_pb2.FownEntry
    tfd: _containers.RepeatedCompositeFieldContainer[EventpollTfdEntry]
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ..., tfd: _Optional[_Iterable[_Union[EventpollTfdEntry, _Mapping]]] = ...) -> None: ...
