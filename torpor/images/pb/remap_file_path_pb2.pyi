from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RemapType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINKED: _ClassVar[RemapType]
    GHOST: _ClassVar[RemapType]
    PROCFS: _ClassVar[RemapType]
LINKED: RemapType
GHOST: RemapType
PROCFS: RemapType

class RemapFilePathEntry(_message.Message):
    __slots__ = ("orig_id", "remap_id", "remap_type")
    ORIG_ID_FIELD_NUMBER: _ClassVar[int]
    REMAP_ID_FIELD_NUMBER: _ClassVar[int]
    REMAP_TYPE_FIELD_NUMBER: _ClassVar[int]
    orig_id: int
    remap_id: int
    remap_type: RemapType
    def __init__(self, orig_id: _Optional[int] = ..., remap_id: _Optional[int] = ..., remap_type: _Optional[_Union[RemapType, str]] = ...) -> None: ...
