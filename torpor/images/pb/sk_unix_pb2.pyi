from torpor.images.pb import fown_pb2 as _fown_pb2
from torpor.images.pb import sk_opts_pb2 as _sk_opts_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FilePermsEntry(_message.Message):
    __slots__ = ("mode", "uid", "gid")
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    mode: int
    uid: int
    gid: int
    def __init__(self, mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class UnixSkEntry(_message.Message):
    __slots__ = ("id", "ino", "type", "state", "flags", "uflags", "backlog", "peer", "fown", "opts", "name", "shutdown", "file_perms", "name_dir", "deleted", "ns_id", "mnt_id", "torpor_name_ino", "torpor_accepted_from", "torpor_pending_index", "torpor_peer_name", "torpor_peer_uid", "torpor_peer_gid", "torpor_name_free")
    ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    UFLAGS_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    OPTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    FILE_PERMS_FIELD_NUMBER: _ClassVar[int]
    NAME_DIR_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    TORPOR_NAME_INO_FIELD_NUMBER: _ClassVar[int]
    TORPOR_ACCEPTED_FROM_FIELD_NUMBER: _ClassVar[int]
    TORPOR_PENDING_INDEX_FIELD_NUMBER: _ClassVar[int]
    TORPOR_PEER_NAME_FIELD_NUMBER: _ClassVar[int]
    TORPOR_PEER_UID_FIELD_NUMBER: _ClassVar[int]
    TORPOR_PEER_GID_FIELD_NUMBER: _ClassVar[int]
    TORPOR_NAME_FREE_FIELD_NUMBER: _ClassVar[int]
    id: int
    ino: int
    type: int
    state: int
    flags: int
    uflags: int
    backlog: int
    peer: int
    fown: _fown_pb2.FownEntry
    opts: _sk_opts_pb2.SkOptsEntry
    name: bytes
    shutdown: _sk_opts_pb2.SkShutdown
    file_perms: FilePermsEntry
    name_dir: str
    deleted: bool
    ns_id: int
    mnt_id: int
    torpor_name_ino: int
    torpor_accepted_from: int
    torpor_pending_index: int
    torpor_peer_name: bytes
    torpor_peer_uid: int
    torpor_peer_gid: int
    torpor_name_free: bool
    def __init__(self, id: _Optional[int] = ..., ino: _Optional[int] = ..., type: _Optional[int] = ..., state: _Optional[int] = ..., flags: _Optional[int] = ..., uflags: _Optional[int] = ..., backlog: _Optional[int] = ..., peer: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.FownEntry, _Mapping]] = ..., opts: _Optional[_Union[_sk_opts_pb2.SkOptsEntry, _Mapping]] = ..., name: _Optional[bytes] = ..., shutdown: _Optional[_Union[_sk_opts_pb2.SkShutdown, str]] = ..., file_perms: _Optional[_Union[FilePermsEntry, _Mapping]] = ..., name_dir: _Optional[str] = ..., deleted: bool = ..., ns_id: _Optional[int] = ..., mnt_id: _Optional[int] = ..., torpor_name_ino: _Optional[int] = ..., torpor_accepted_from: _Optional[int] = ..., torpor_pending_index: _Optional[int] = ..., torpor_peer_name: _Optional[bytes] = ..., torpor_peer_uid: _Optional[int] = ..., torpor_peer_gid: _Optional[int] = ..., torpor_name_free: bool = ...) -> None: ...
