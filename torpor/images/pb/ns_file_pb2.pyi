from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class NsFileEntry(_message.Message):
    __slots__ = ("id", "ns_id", "ns_cflag", "flags", "torpor_for_children")
    ID_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    NS_CFLAG_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TORPOR_FOR_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    id: int
    ns_id: int
    ns_cflag: int
    flags: int
    torpor_for_children: bool
    def __init__(self, id: _Optional[int] = ..., ns_id: _Optional[int] = ..., ns_cflag: _Optional[int] = ..., flags: _Optional[int] = ..., torpor_for_children: bool = ...) -> None: ...
