from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FhEntry(_message.Message):
    __slots__ = ("bytes", "type", "handle", "path", "mnt_id")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    type: int
    handle: _containers.RepeatedScalarFieldContainer[int]
    path: str
    mnt_id: int
    def __init__(self, bytes: _Optional[int] = ..., type: _Optional[int] = ..., handle: _Optional[_Iterable[int]] = ..., path: _Optional[str] = ..., mnt_id: _Optional[int] = ...) -> None: ...
