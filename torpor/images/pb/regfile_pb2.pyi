from torpor.images.pb import fown_pb2 as _fown_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegFileEntry(_message.Message):
    __slots__ = ("id", "flags", "pos", "fown", "name", "mnt_id", "size", "ext", "mode", "build_id", "checksum", "checksum_config", "checksum_parameter", "torpor_memfd", "torpor_memfd_seals")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    EXT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    TORPOR_MEMFD_FIELD_NUMBER: _ClassVar[int]
    TORPOR_MEMFD_SEALS_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    pos: int
    fown: _fown_pb2.FownEntry
    name: str
    mnt_id: int
    size: int
    ext: bool
    mode: int
    build_id: _containers.RepeatedScalarFieldContainer[int]
    checksum: int
    checksum_config: int
    checksum_parameter: int
    torpor_memfd: int
    torpor_memfd_seals: int
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., pos: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ..., name: _Optional[str] = ..., mnt_id: _Optional[int] = ..., size: _Optional[int] = ..., ext: bool = ..., mode: _Optional[int] = ..., build_id: _Optional[_Iterable[int]] = ..., checksum: _Optional[int] = ..., checksum_config: _Optional[int] = ..., checksum_parameter: _Optional[int] = ..., torpor_memfd: _Optional[int] = ..., torpor_memfd_seals: _Optional[int] = ...) -> None: ...
