from torpor.images.pb import fown_pb2 as _fown_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipeEntry(_message.Message):
    __slots__ = ("id", "pipe_id", "flags", "fown", "torpor_outside")
    ID_FIELD_NUMBER: _ClassVar[int]
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    TORPOR_OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    id: int
    pipe_id: int
    flags: int
    fown: _fown_pb2.FownEntry
    torpor_outside: bool
    def __init__(self, id: _Optional[int] = ..., pipe_id: _Optional[int] = ..., flags: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ..., torpor_outside: bool = ...) -> None: ...
