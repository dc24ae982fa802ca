from torpor.images.pb import core_x86_pb2 as _core_x86_pb2
from torpor.images.pb import rlimit_pb2 as _rlimit_pb2
from torpor.images.pb import timer_pb2 as _timer_pb2
from torpor.images.pb import creds_pb2 as _creds_pb2
from torpor.images.pb import sa_pb2 as _sa_pb2
from torpor.images.pb import siginfo_pb2 as _siginfo_pb2
from torpor.images.pb import rseq_pb2 as _rseq_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeccompMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    disabled: _ClassVar[SeccompMode]
    strict: _ClassVar[SeccompMode]
    filter: _ClassVar[SeccompMode]
disabled: SeccompMode
strict: SeccompMode
filter: SeccompMode

class TaskRlimitsEntry(_message.Message):
    __slots__ = ("rlimits",)
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    rlimits: _containers.RepeatedCompositeFieldContainer[_rlimit_pb2.RlimitEntry]
    def __init__(self, rlimits: _Optional[_Iterable[_Union[_rlimit_pb2.RlimitEntry, _Mapping]]] = ...) -> None: ...

class TaskCoreEntry(_message.Message):
    __slots__ = ("task_state", "exit_code", "personality", "flags", "blk_sigset", "comm", "timers", "rlimits", "cg_set", "signals_s", "old_seccomp_mode", "old_seccomp_filter", "loginuid", "oom_score_adj", "sigactions", "child_subreaper", "blk_sigset_extended", "stop_signo")
    TASK_STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PERSONALITY_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    BLK_SIGSET_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    CG_SET_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_S_FIELD_NUMBER: _ClassVar[int]
    OLD_SECCOMP_MODE_FIELD_NUMBER: _ClassVar[int]
    OLD_SECCOMP_FILTER_FIELD_NUMBER: _ClassVar[int]
    LOGINUID_FIELD_NUMBER: _ClassVar[int]
    OOM_SCORE_ADJ_FIELD_NUMBER: _ClassVar[int]
    SIGACTIONS_FIELD_NUMBER: _ClassVar[int]
    CHILD_SUBREAPER_FIELD_NUMBER: _ClassVar[int]
    BLK_SIGSET_EXTENDED_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNO_FIELD_NUMBER: _ClassVar[int]
    task_state: int
    exit_code: int
    personality: int
    flags: int
    blk_sigset: int
    comm: str
    timers: _timer_pb2.TaskTimersEntry
    rlimits: TaskRlimitsEntry
    cg_set: int
    signals_s: _siginfo_pb2.SignalQueueEntry
    old_seccomp_mode: SeccompMode
    old_seccomp_filter: int
    loginuid: int
    oom_score_adj: int
    sigactions: _containers.RepeatedCompositeFieldContainer[_sa_pb2.SaEntry]
    child_subreaper: bool
    blk_sigset_extended: int
    stop_signo: int
    def __init__(self, task_state: _Optional[int] = ..., exit_code: _Optional[int] = ..., personality: _Optional[int] = ..., flags: _Optional[int] = ..., blk_sigset: _Optional[int] = ..., comm: _Optional[str] = ..., timers: _Optional[_Union[_timer_pb2.TaskTimersEntry, _Mapping]] = ..., rlimits: _Optional[_Union[TaskRlimitsEntry, _Mapping]] = ..., cg_set: _Optional[int] = ..., signals_s: _Optional[_Union[_siginfo_pb2.SignalQueueEntry, _Mapping]] = ..., old_seccomp_mode: _Optional[_Union[SeccompMode, str]] = ..., old_seccomp_filter: _Optional[int] = ..., loginuid: _Optional[int] = ..., oom_score_adj: _Optional[int] = ..., sigactions: _Optional[_Iterable[_Union[_sa_pb2.SaEntry, _Mapping]]] = ..., child_subreaper: bool = ..., blk_sigset_extended: _Optional[int] = ..., stop_signo: _Optional[int] = ...) -> None: ...

class TaskKobjIdsEntry(_message.Message):
    __slots__ = ("vm_id", "files_id", "fs_id", "sighand_id", "pid_ns_id", "net_ns_id", "ipc_ns_id", "uts_ns_id", "mnt_ns_id", "user_ns_id", "cgroup_ns_id", "time_ns_id")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_ID_FIELD_NUMBER: _ClassVar[int]
    FS_ID_FIELD_NUMBER: _ClassVar[int]
    SIGHAND_ID_FIELD_NUMBER: _ClassVar[int]
    PID_NS_ID_FIELD_NUMBER: _ClassVar[int]
    NET_NS_ID_FIELD_NUMBER: _ClassVar[int]
    IPC_NS_ID_FIELD_NUMBER: _ClassVar[int]
    UTS_NS_ID_FIELD_NUMBER: _ClassVar[int]
    MNT_NS_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NS_ID_FIELD_NUMBER: _ClassVar[int]
    CGROUP_NS_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: int
    files_id: int
    fs_id: int
    sighand_id: int
    pid_ns_id: int
    net_ns_id: int
    ipc_ns_id: int
    uts_ns_id: int
    mnt_ns_id: int
    user_ns_id: int
    cgroup_ns_id: int
    time_ns_id: int
    def __init__(self, vm_id: _Optional[int] = ..., files_id: _Optional[int] = ..., fs_id: _Optional[int] = ..., sighand_id: _Optional[int] = ..., pid_ns_id: _Optional[int] = ..., net_ns_id: _Optional[int] = ..., ipc_ns_id: _Optional[int] = ..., uts_ns_id: _Optional[int] = ..., mnt_ns_id: _Optional[int] = ..., user_ns_id: _Optional[int] = ..., cgroup_ns_id: _Optional[int] = ..., time_ns_id: _Optional[int] = ...) -> None: ...

class ThreadSasEntry(_message.Message):
    __slots__ = ("ss_sp", "ss_size", "ss_flags")
    SS_SP_FIELD_NUMBER: _ClassVar[int]
    SS_SIZE_FIELD_NUMBER: _ClassVar[int]
    SS_FLAGS_FIELD_NUMBER: _ClassVar[int]
    ss_sp: int
    ss_size: int
    ss_flags: int
    def __init__(self, ss_sp: _Optional[int] = ..., ss_size: _Optional[int] = ..., ss_flags: _Optional[int] = ...) -> None: ...

class ThreadCoreEntry(_message.Message):
    __slots__ = ("futex_rla", "futex_rla_len", "sched_nice", "sched_policy", "sched_prio", "blk_sigset", "sas", "pdeath_sig", "signals_p", "creds", "seccomp_mode", "seccomp_filter", "comm", "blk_sigset_extended", "rseq_entry", "cg_set", "torpor_cpus", "torpor_ioprio", "torpor_timer_slack_ns", "torpor_deadline", "torpor_util_min", "torpor_util_max")
    FUTEX_RLA_FIELD_NUMBER: _ClassVar[int]
    FUTEX_RLA_LEN_FIELD_NUMBER: _ClassVar[int]
    SCHED_NICE_FIELD_NUMBER: _ClassVar[int]
    SCHED_POLICY_FIELD_NUMBER: _ClassVar[int]
    SCHED_PRIO_FIELD_NUMBER: _ClassVar[int]
    BLK_SIGSET_FIELD_NUMBER: _ClassVar[int]
    SAS_FIELD_NUMBER: _ClassVar[int]
    PDEATH_SIG_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_P_FIELD_NUMBER: _ClassVar[int]
    CREDS_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_MODE_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_FILTER_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    BLK_SIGSET_EXTENDED_FIELD_NUMBER: _ClassVar[int]
    RSEQ_ENTRY_FIELD_NUMBER: _ClassVar[int]
    CG_SET_FIELD_NUMBER: _ClassVar[int]
    TORPOR_CPUS_FIELD_NUMBER: _ClassVar[int]
    TORPOR_IOPRIO_FIELD_NUMBER: _ClassVar[int]
    TORPOR_TIMER_SLACK_NS_FIELD_NUMBER: _ClassVar[int]
    TORPOR_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TORPOR_UTIL_MIN_FIELD_NUMBER: _ClassVar[int]
    TORPOR_UTIL_MAX_FIELD_NUMBER: _ClassVar[int]
    futex_rla: int
    futex_rla_len: int
    sched_nice: int
    sched_policy: int
    sched_prio: int
    blk_sigset: int
    sas: ThreadSasEntry
    pdeath_sig: int
    signals_p: _siginfo_pb2.SignalQueueEntry
    creds: _creds_pb2.CredsEntry
    seccomp_mode: SeccompMode
    seccomp_filter: int
    comm: str
    blk_sigset_extended: int
    rseq_entry: _rseq_pb2.RseqEntry
    cg_set: int
    torpor_cpus: _containers.RepeatedScalarFieldContainer[int]
    torpor_ioprio: int
    torpor_timer_slack_ns: int
    torpor_deadline: TorporDeadline
    torpor_util_min: int
    torpor_util_max: int
    def __init__(self, futex_rla: _Optional[int] = ..., futex_rla_len: _Optional[int] = ..., sched_nice: _Optional[int] = ..., sched_policy: _Optional[int] = ..., sched_prio: _Optional[int] = ..., blk_sigset: _Optional[int] = ..., sas: _Optional[_Union[ThreadSasEntry, _Mapping]] = ..., pdeath_sig: _Optional[int] = ..., signals_p: _Optional[_Union[_siginfo_pb2.SignalQueueEntry, _Mapping]] = ..., creds: _Optional[_Union[_creds_pb2.CredsEntry, _Mapping]] = ..., seccomp_mode: _Optional[_Union[SeccompMode, str]] = ..., seccomp_filter: _Optional[int] = ..., comm: _Optional[str] = ..., blk_sigset_extended: _Optional[int] = ..., rseq_entry: _Optional[_Union[_rseq_pb2.RseqEntry, _Mapping]] = ..., cg_set: _Optional[int] = ..., torpor_cpus: _Optional[_Iterable[int]] = ..., torpor_ioprio: _Optional[int] = ..., torpor_timer_slack_ns: _Optional[int] = ..., torpor_deadline: _Optional[_Union[TorporDeadline, _Mapping]] = ..., torpor_util_min: _Optional[int] = ..., torpor_util_max: _Optional[int] = ...) -> None: ...

class TorporDeadline(_message.Message):
    __slots__ = ("runtime", "deadline", "period", "flags")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    runtime: int
    deadline: int
    period: int
    flags: int
    def __init__(self, runtime: _Optional[int] = ..., deadline: _Optional[int] = ..., period: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class CoreEntry(_message.Message):
    __slots__ = ("mtype", "thread_info", "tc", "ids", "thread_core", "torpor_audit")
    class March(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[CoreEntry.March]
        X86_64: _ClassVar[CoreEntry.March]
        ARM: _ClassVar[CoreEntry.March]
        AARCH64: _ClassVar[CoreEntry.March]
        PPC64: _ClassVar[CoreEntry.March]
        S390: _ClassVar[CoreEntry.March]
        MIPS: _ClassVar[CoreEntry.March]
    UNKNOWN: CoreEntry.March
    X86_64: CoreEntry.March
    ARM: CoreEntry.March
    AARCH64: CoreEntry.March
    PPC64: CoreEntry.March
    S390: CoreEntry.March
    MIPS: CoreEntry.March
    MTYPE_FIELD_NUMBER: _ClassVar[int]
    THREAD_INFO_FIELD_NUMBER: _ClassVar[int]
    TC_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    THREAD_CORE_FIELD_NUMBER: _ClassVar[int]
    TORPOR_AUDIT_FIELD_NUMBER: _ClassVar[int]
    mtype: CoreEntry.March
    thread_info: _core_x86_pb2.ThreadInfoX86
    tc: TaskCoreEntry
    ids: TaskKobjIdsEntry
    thread_core: ThreadCoreEntry
    torpor_audit: TorporAudit
    def __init__(self, mtype: _Optional[_Union[CoreEntry.March, str]] = ..., thread_info: _Optional[_Union[_core_x86_pb2.ThreadInfoX86, _Mapping]] = ..., tc: _Optional[_Union[TaskCoreEntry, _Mapping]] = ..., ids: _Optional[_Union[TaskKobjIdsEntry, _Mapping]] = ..., thread_core: _Optional[_Union[ThreadCoreEntry, _Mapping]] = ..., torpor_audit: _Optional[_Union[TorporAudit, _Mapping]] = ...) -> None: ...

class TorporAuditValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class TorporAudit(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[TorporAuditValue]
    def __init__(self, values: _Optional[_Iterable[_Union[TorporAuditValue, _Mapping]]] = ...) -> None: ...
