from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FifoEntry(_message.Message):
    __slots__ = ("id", "pipe_id", "regf_id", "wait_writer", "torpor_outside", "torpor_path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    REGF_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_WRITER_FIELD_NUMBER: _ClassVar[int]
    TORPOR_OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    TORPOR_PATH_FIELD_NUMBER: _ClassVar[int]
    id: int
    pipe_id: int
    regf_id: int
    wait_writer: bool
    torpor_outside: bool
    torpor_path: str
    def __init__(self, id: _Optional[int] = ..., pipe_id: _Optional[int] = ..., regf_id: _Optional[int] = ..., wait_writer: bool = ..., torpor_outside: bool = ..., torpor_path: _Optional[str] = ...) -> None: ...
