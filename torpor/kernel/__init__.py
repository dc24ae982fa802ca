"""The Linux ABI as torpor uses it, without policy: syscalls, ptrace, procfs, memory I/O."""
