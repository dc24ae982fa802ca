"""The Linux ABI as torpor uses it, without policy: raw syscalls, ptrace, procfs readers, memory I/O."""
