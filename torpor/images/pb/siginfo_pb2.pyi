from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SiginfoEntry(_message.Message):
    __slots__ = ("siginfo",)
    SIGINFO_FIELD_NUMBER: _ClassVar[int]
    siginfo: bytes
    def __init__(self, siginfo: _Optional[bytes] = ...) -> None: ...

class SignalQueueEntry(_message.Message):
    __slots__ = ("signals",)
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    signals: _containers.RepeatedCompositeFieldContainer[SiginfoEntry]
    def __init__(self, signals: _Optional[_Iterable[_Union[SiginfoEntry, _Mapping]]] = ...) -> None: ...
