from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CpuinfoX86Entry(_message.Message):
    __slots__ = ("vendor_id", "cpu_family", "model", "stepping", "capability_ver", "capability", "model_id", "xfeatures_mask", "xsave_size", "xsave_size_max")
    class Vendor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[CpuinfoX86Entry.Vendor]
        INTEL: _ClassVar[CpuinfoX86Entry.Vendor]
        AMD: _ClassVar[CpuinfoX86Entry.Vendor]
    UNKNOWN: CpuinfoX86Entry.Vendor
    INTEL: CpuinfoX86Entry.Vendor
    AMD: CpuinfoX86Entry.Vendor
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_FAMILY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEPPING_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_VER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    XFEATURES_MASK_FIELD_NUMBER: _ClassVar[int]
    XSAVE_SIZE_FIELD_NUMBER: _ClassVar[int]
    XSAVE_SIZE_MAX_FIELD_NUMBER: _ClassVar[int]
    vendor_id: CpuinfoX86Entry.Vendor
    cpu_family: int
    model: int
    stepping: int
    capability_ver: int
    capability: _containers.RepeatedScalarFieldContainer[int]
    model_id: str
    xfeatures_mask: int
    xsave_size: int
    xsave_size_max: int
    def __init__(self, vendor_id: _Optional[_Union[CpuinfoX86Entry.Vendor, str]] = ..., cpu_family: _Optional[int] = ..., model: _Optional[int] = ..., stepping: _Optional[int] = ..., capability_ver: _Optional[int] = ..., capability: _Optional[_Iterable[int]] = ..., model_id: _Optional[str] = ..., xfeatures_mask: _Optional[int] = ..., xsave_size: _Optional[int] = ..., xsave_size_max: _Optional[int] = ...) -> None: ...

class CpuinfoEntry(_message.Message):
    __slots__ = ("x86_entry",)
    X86_ENTRY_FIELD_NUMBER: _ClassVar[int]
    x86_entry: _containers.RepeatedCompositeFieldContainer[CpuinfoX86Entry]
    def __init__(self, x86_entry: _Optional[_Iterable[_Union[CpuinfoX86Entry, _Mapping]]] = ...) -> None: ...
