from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Timeval(_message.Message):
    __slots__ = ("tv_sec", "tv_usec")
    TV_SEC_FIELD_NUMBER: _ClassVar[int]
    TV_USEC_FIELD_NUMBER: _ClassVar[int]
    tv_sec: int
    tv_usec: int
    def __init__(self, tv_sec: _Optional[int] = ..., tv_usec: _Optional[int] = ...) -> None: ...

class GhostFileEntry(_message.Message):
    __slots__ = ("uid", "gid", "mode", "dev", "ino", "rdev", "atim", "mtim", "chunks", "size")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    ATIM_FIELD_NUMBER: _ClassVar[int]
    MTIM_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    mode: int
    dev: int
    ino: int
    rdev: int
    atim: Timeval
    mtim: Timeval
    chunks: bool
    size: int
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ..., mode: _Optional[int] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ..., rdev: _Optional[int] = ..., atim: _Optional[_Union[Timeval, _Mapping]] = ..., mtim: _Optional[_Union[Timeval, _Mapping]] = ..., chunks: bool = ..., size: _Optional[int] = ...) -> None: ...
