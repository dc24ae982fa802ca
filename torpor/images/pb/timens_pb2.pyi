from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Timespec(_message.Message):
    __slots__ = ("tv_sec", "tv_nsec")
    TV_SEC_FIELD_NUMBER: _ClassVar[int]
    TV_NSEC_FIELD_NUMBER: _ClassVar[int]
    tv_sec: int
    tv_nsec: int
    def __init__(self, tv_sec: _Optional[int] = ..., tv_nsec: _Optional[int] = ...) -> None: ...

class TimensEntry(_message.Message):
    __slots__ = ("monotonic", "boottime")
    MONOTONIC_FIELD_NUMBER: _ClassVar[int]
    BOOTTIME_FIELD_NUMBER: _ClassVar[int]
    monotonic: Timespec
    boottime: Timespec
    def __init__(self, monotonic: _Optional[_Union[Timespec, _Mapping]] = ..., boottime: _Optional[_Union[Timespec, _Mapping]] = ...) -> None: ...
