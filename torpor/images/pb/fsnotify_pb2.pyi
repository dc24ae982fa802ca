from torpor.images.pb import fh_pb2 as _fh_pb2
from torpor.images.pb import fown_pb2 as _fown_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MarkType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INODE: _ClassVar[MarkType]
    MOUNT: _ClassVar[MarkType]
INODE: MarkType
MOUNT: MarkType

class InotifyWdEntry(_message.Message):
    __slots__ = ("id", "i_ino", "mask", "ignored_mask", "s_dev", "wd", "f_handle")
    ID_FIELD_NUMBER: _ClassVar[int]
    I_INO_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    IGNORED_MASK_FIELD_NUMBER: _ClassVar[int]
    S_DEV_FIELD_NUMBER: _ClassVar[int]
    WD_FIELD_NUMBER: _ClassVar[int]
    F_HANDLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    i_ino: int
    mask: int
    ignored_mask: int
    s_dev: int
    wd: int
    f_handle: _fh_pb2.FhEntry
    def __init__(self, id: _Optional[int] = ..., i_ino: _Optional[int] = ..., mask: _Optional[int] = ..., ignored_mask: _Optional[int] = ..., s_dev: _Optional[int] = ..., wd: _Optional[int] = ..., f_handle: _Optional[_Union[_fh_pb2.FhEntry, _Mapping]] = ...) -> None: ...

class InotifyFileEntry(_message.Message):
    __slots__ = ("id", "flags", "fown", "wd")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    WD_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    fown: _fown_pb2.FownEntry
    wd: _containers.RepeatedCompositeFieldContainer[InotifyWdEntry]
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ..., wd: _Optional[_Iterable[_Union[InotifyWdEntry, _Mapping]]] = ...) -> None: ...

class FanotifyInodeMarkEntry(_message.Message):
    __slots__ = ("i_ino", "f_handle")
    I_INO_FIELD_NUMBER: _ClassVar[int]
    F_HANDLE_FIELD_NUMBER: _ClassVar[int]
    i_ino: int
    f_handle: _fh_pb2.FhEntry
    def __init__(self, i_ino: _Optional[int] = ..., f_handle: _Optional[_Union[_fh_pb2.FhEntry, _Mapping]] = ...) -> None: ...

class FanotifyMountMarkEntry(_message.Message):
    __slots__ = ("mnt_id", "path")
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    mnt_id: int
    path: str
    def __init__(self, mnt_id: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...

class FanotifyMarkEntry(_message.Message):
    __slots__ = ("id", "type", "mflags", "mask", "ignored_mask", "s_dev", "ie", "me", "torpor_filesystem")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MFLAGS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    IGNORED_MASK_FIELD_NUMBER: _ClassVar[int]
    S_DEV_FIELD_NUMBER: _ClassVar[int]
    IE_FIELD_NUMBER: _ClassVar[int]
    ME_FIELD_NUMBER: _ClassVar[int]
    TORPOR_FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: MarkType
    mflags: int
    mask: int
    ignored_mask: int
    s_dev: int
    ie: FanotifyInodeMarkEntry
    me: FanotifyMountMarkEntry
    torpor_filesystem: bool
    def __init__(self, id: _Optional[int] = ..., type: _Optional[_Union[MarkType, str]] = ..., mflags: _Optional[int] = ..., mask: _Optional[int] = ..., ignored_mask: _Optional[int] = ..., s_dev: _Optional[int] = ..., ie: _Optional[_Union[FanotifyInodeMarkEntry, _Mapping]] = ..., me: _Optional[_Union[FanotifyMountMarkEntry, _Mapping]] = ..., torpor_filesystem: bool = ...) -> None: ...

class FanotifyFileEntry(_message.Message):
    __slots__ = ("id", "flags", "fown", "faflags", "evflags", "mark")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    FAFLAGS_FIELD_NUMBER: _ClassVar[int]
    EVFLAGS_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    fown: _fown_pb2.FownEntry
    faflags: int
    evflags: int
    mark: _containers.RepeatedCompositeFieldContainer[FanotifyMarkEntry]
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ..., faflags: _Optional[int] = ..., evflags: _Optional[int] = ..., mark: _Optional[_Iterable[_Union[FanotifyMarkEntry, _Mapping]]] = ...) -> None: ...
