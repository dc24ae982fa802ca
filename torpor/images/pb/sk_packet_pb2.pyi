from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScmEntry(_message.Message):
    __slots__ = ("type", "rights")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    type: int
    rights: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, type: _Optional[int] = ..., rights: _Optional[_Iterable[int]] = ...) -> None: ...

class SkUcredEntry(_message.Message):
    __slots__ = ("uid", "gid", "pid")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    pid: int
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class SkPacketEntry(_message.Message):
    __slots__ = ("id_for", "length", "addr", "scm", "ucred", "torpor_sent")
    ID_FOR_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    SCM_FIELD_NUMBER: _ClassVar[int]
    UCRED_FIELD_NUMBER: _ClassVar[int]
    TORPOR_SENT_FIELD_NUMBER: _ClassVar[int]
    id_for: int
    length: int
    addr: bytes
    scm: _containers.RepeatedCompositeFieldContainer[ScmEntry]
    ucred: SkUcredEntry
    torpor_sent: bool
    def __init__(self, id_for: _Optional[int] = ..., length: _Optional[int] = ..., addr: _Optional[bytes] = ..., scm: _Optional[_Iterable[_Union[ScmEntry, _Mapping]]] = ..., ucred: _Optional[_Union[SkUcredEntry, _Mapping]] = ..., torpor_sent: bool = ...) -> None: ...
