from torpor.images.pb import regfile_pb2 as _regfile_pb2
from torpor.images.pb import pipe_pb2 as _pipe_pb2
from torpor.images.pb import tty_pb2 as _tty_pb2
from torpor.images.pb import ns_file_pb2 as _ns_file_pb2
from torpor.images.pb import eventfd_pb2 as _eventfd_pb2
from torpor.images.pb import eventpoll_pb2 as _eventpoll_pb2
from torpor.images.pb import signalfd_pb2 as _signalfd_pb2
from torpor.images.pb import timerfd_pb2 as _timerfd_pb2
from torpor.images.pb import fsnotify_pb2 as _fsnotify_pb2
from torpor.images.pb import fifo_pb2 as _fifo_pb2
from torpor.images.pb import sk_unix_pb2 as _sk_unix_pb2
from torpor.images.pb import sk_inet_pb2 as _sk_inet_pb2
from torpor.images.pb import sk_netlink_pb2 as _sk_netlink_pb2
from torpor.images.pb import packet_sock_pb2 as _packet_sock_pb2
from torpor.images.pb import pidfd_pb2 as _pidfd_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FdTypes(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UND: _ClassVar[FdTypes]
    REG: _ClassVar[FdTypes]
    PIPE: _ClassVar[FdTypes]
    FIFO: _ClassVar[FdTypes]
    INETSK: _ClassVar[FdTypes]
    UNIXSK: _ClassVar[FdTypes]
    EVENTFD: _ClassVar[FdTypes]
    EVENTPOLL: _ClassVar[FdTypes]
    INOTIFY: _ClassVar[FdTypes]
    SIGNALFD: _ClassVar[FdTypes]
    PACKETSK: _ClassVar[FdTypes]
    TTY: _ClassVar[FdTypes]
    FANOTIFY: _ClassVar[FdTypes]
    NETLINKSK: _ClassVar[FdTypes]
    NS: _ClassVar[FdTypes]
    TUNF: _ClassVar[FdTypes]
    EXT: _ClassVar[FdTypes]
    TIMERFD: _ClassVar[FdTypes]
    MEMFD: _ClassVar[FdTypes]
    BPFMAP: _ClassVar[FdTypes]
    PIDFD: _ClassVar[FdTypes]
    CTL_TTY: _ClassVar[FdTypes]
    AUTOFS_PIPE: _ClassVar[FdTypes]
UND: FdTypes
REG: FdTypes
PIPE: FdTypes
FIFO: FdTypes
INETSK: FdTypes
UNIXSK: FdTypes
EVENTFD: FdTypes
EVENTPOLL: FdTypes
INOTIFY: FdTypes
SIGNALFD: FdTypes
PACKETSK: FdTypes
TTY: FdTypes
FANOTIFY: FdTypes
NETLINKSK: FdTypes
NS: FdTypes
TUNF: FdTypes
EXT: FdTypes
TIMERFD: FdTypes
MEMFD: FdTypes
BPFMAP: FdTypes
PIDFD: FdTypes
CTL_TTY: FdTypes
AUTOFS_PIPE: FdTypes

class FdinfoEntry(_message.Message):
    __slots__ = ("id", "flags", "type", "fd", "xattr_security_selinux")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    XATTR_SECURITY_SELINUX_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    type: FdTypes
    fd: int
    xattr_security_selinux: str
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., type: _Optional[_Union[FdTypes, str]] = ..., fd: _Optional[int] = ..., xattr_security_selinux: _Optional[str] = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("type", "id", "reg", "isk", "psk", "nlsk", "efd", "epfd", "sgfd", "nsf", "tfd", "ify", "ffy", "usk", "fifo", "pipe", "tty", "pidfd")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REG_FIELD_NUMBER: _ClassVar[int]
    ISK_FIELD_NUMBER: _ClassVar[int]
    PSK_FIELD_NUMBER: _ClassVar[int]
    NLSK_FIELD_NUMBER: _ClassVar[int]
    EFD_FIELD_NUMBER: _ClassVar[int]
    EPFD_FIELD_NUMBER: _ClassVar[int]
    SGFD_FIELD_NUMBER: _ClassVar[int]
    NSF_FIELD_NUMBER: _ClassVar[int]
    TFD_FIELD_NUMBER: _ClassVar[int]
    IFY_FIELD_NUMBER: _ClassVar[int]
    FFY_FIELD_NUMBER: _ClassVar[int]
    USK_FIELD_NUMBER: _ClassVar[int]
    FIFO_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    PIDFD_FIELD_NUMBER: _ClassVar[int]
    type: FdTypes
    id: int
    reg: _regfile_pb2.RegFileEntry
    isk: _sk_inet_pb2.InetSkEntry
    psk: _packet_sock_pb2.PacketSockEntry
    nlsk: _sk_netlink_pb2.NetlinkSkEntry
    efd: _eventfd_pb2.EventfdFileEntry
    epfd: _eventpoll_pb2.EventpollFileEntry
    sgfd: _signalfd_pb2.SignalfdEntry
    nsf: _ns_file_pb2.NsFileEntry
    tfd: _timerfd_pb2.TimerfdEntry
    ify: _fsnotify_pb2.InotifyFileEntry
    ffy: _fsnotify_pb2.FanotifyFileEntry
    usk: _sk_unix_pb2.UnixSkEntry
    fifo: _fifo_pb2.FifoEntry
    pipe: _pipe_pb2.PipeEntry
    tty: _tty_pb2.TtyFileEntry
    pidfd: _pidfd_pb2.PidfdEntry
    def __init__(self, type: _Optional[_Union[FdTypes, str]] = ..., id: _Optional[int] = ..., reg: _Optional[_Union[_regfile_pb2.RegFileEntry, _Mapping]] = ..., isk: _Optional[_Union[_sk_inet_pb2.InetSkEntry, _Mapping]] = ..., psk: _Optional[_Union[_packet_sock_pb2.PacketSockEntry, _Mapping]] = ..., nlsk: _Optional[_Union[_sk_netlink_pb2.NetlinkSkEntry, _Mapping]] = ..., efd: _Optional[_Union[_eventfd_pb2.EventfdFileEntry, _Mapping]] = ..., epfd: _Optional[_Union[_eventpoll_pb2.EventpollFileEntry, _Mapping]] = ..., sgfd: _Optional[_Union[_signalfd_pb2.SignalfdEntry, _Mapping]] = ..., nsf: _Optional[_Union[_ns_file_pb2.NsFileEntry, _Mapping]] = ..., tfd: _Optional[_Union[_timerfd_pb2.TimerfdEntry, _Mapping]] = ..., ify: _Optional[_Union[_fsnotify_pb2.InotifyFileEntry, _Mapping]] = ..., ffy: _Optional[_Union[_fsnotify_pb2.FanotifyFileEntry, _Mapping]] = ..., usk: _Optional[_Union[_sk_unix_pb2.UnixSkEntry, _Mapping]] = ..., fifo: _Optional[_Union[_fifo_pb2.FifoEntry, _Mapping]] = ..., pipe: _Optional[_Union[_pipe_pb2.PipeEntry, _Mapping]] = ..., tty: _Optional[_Union[_tty_pb2.TtyFileEntry, _Mapping]] = ..., pidfd: _Optional[_Union[_pidfd_pb2.PidfdEntry, _Mapping]] = ...) -> None: ...
