from torpor.images.pb import core_pb2 as _core_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LsmType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NO_LSM: _ClassVar[LsmType]
    SELINUX: _ClassVar[LsmType]
    APPARMOR: _ClassVar[LsmType]
NO_LSM: LsmType
SELINUX: LsmType
APPARMOR: LsmType

class TorporDigest(_message.Message):
    __slots__ = ("name", "digest", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: bytes
    size: int
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class InventoryEntry(_message.Message):
    __slots__ = ("img_version", "fdinfo_per_id", "root_ids", "ns_per_id", "root_cg_set", "lsmtype", "dump_uptime", "pre_dump_mode", "tcp_close", "network_lock_method", "torpor_digests", "torpor_inventory_digest", "torpor_network_lock_table")
    IMG_VERSION_FIELD_NUMBER: _ClassVar[int]
    FDINFO_PER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_IDS_FIELD_NUMBER: _ClassVar[int]
    NS_PER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_CG_SET_FIELD_NUMBER: _ClassVar[int]
    LSMTYPE_FIELD_NUMBER: _ClassVar[int]
    DUMP_UPTIME_FIELD_NUMBER: _ClassVar[int]
    PRE_DUMP_MODE_FIELD_NUMBER: _ClassVar[int]
    TCP_CLOSE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_LOCK_METHOD_FIELD_NUMBER: _ClassVar[int]
    TORPOR_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    TORPOR_INVENTORY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    TORPOR_NETWORK_LOCK_TABLE_FIELD_NUMBER: _ClassVar[int]
    img_version: int
    fdinfo_per_id: bool
    root_ids: _core_pb2.TaskKobjIdsEntry
    ns_per_id: bool
    root_cg_set: int
    lsmtype: LsmType
    dump_uptime: int
    pre_dump_mode: int
    tcp_close: bool
    network_lock_method: int
    torpor_digests: _containers.RepeatedCompositeFieldContainer[TorporDigest]
    torpor_inventory_digest: bytes
    torpor_network_lock_table: str
    def __init__(self, img_version: _Optional[int] = ..., fdinfo_per_id: bool = ..., root_ids: _Optional[_Union[_core_pb2.TaskKobjIdsEntry, _Mapping]] = ..., ns_per_id: bool = ..., root_cg_set: _Optional[int] = ..., lsmtype: _Optional[_Union[LsmType, str]] = ..., dump_uptime: _Optional[int] = ..., pre_dump_mode: _Optional[int] = ..., tcp_close: bool = ..., network_lock_method: _Optional[int] = ..., torpor_digests: _Optional[_Iterable[_Union[TorporDigest, _Mapping]]] = ..., torpor_inventory_digest: _Optional[bytes] = ..., torpor_network_lock_table: _Optional[str] = ...) -> None: ...
