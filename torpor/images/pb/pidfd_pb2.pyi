from torpor.images.pb import fown_pb2 as _fown_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PidfdEntry(_message.Message):
    __slots__ = ("id", "ino", "flags", "nspid", "fown")
    ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NSPID_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    id: int
    ino: int
    flags: int
    nspid: int
    fown: _fown_pb2.FownEntry
    def __init__(self, id: _Optional[int] = ..., ino: _Optional[int] = ..., flags: _Optional[int] = ..., nspid: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ...) -> None: ...
