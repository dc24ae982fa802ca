from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class VmaEntry(_message.Message):
    __slots__ = ("start", "end", "pgoff", "shmid", "prot", "flags", "status", "fd", "madv", "fdflags", "torpor_accounted", "torpor_memfd_name", "torpor_pkey", "torpor_memfd_size", "torpor_memfd_seals")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PGOFF_FIELD_NUMBER: _ClassVar[int]
    SHMID_FIELD_NUMBER: _ClassVar[int]
    PROT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    MADV_FIELD_NUMBER: _ClassVar[int]
    FDFLAGS_FIELD_NUMBER: _ClassVar[int]
    TORPOR_ACCOUNTED_FIELD_NUMBER: _ClassVar[int]
    TORPOR_MEMFD_NAME_FIELD_NUMBER: _ClassVar[int]
    TORPOR_PKEY_FIELD_NUMBER: _ClassVar[int]
    TORPOR_MEMFD_SIZE_FIELD_NUMBER: _ClassVar[int]
    TORPOR_MEMFD_SEALS_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    pgoff: int
    shmid: int
    prot: int
    flags: int
    status: int
    fd: int
    madv: int
    fdflags: int
    torpor_accounted: bool
    torpor_memfd_name: str
    torpor_pkey: int
    torpor_memfd_size: int
    torpor_memfd_seals: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., pgoff: _Optional[int] = ..., shmid: _Optional[int] = ..., prot: _Optional[int] = ..., flags: _Optional[int] = ..., status: _Optional[int] = ..., fd: _Optional[int] = ..., madv: _Optional[int] = ..., fdflags: _Optional[int] = ..., torpor_accounted: bool = ..., torpor_memfd_name: _Optional[str] = ..., torpor_pkey: _Optional[int] = ..., torpor_memfd_size: _Optional[int] = ..., torpor_memfd_seals: _Optional[int] = ...) -> None: ...
