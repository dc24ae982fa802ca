"""nftables through libnftables (Debian package libnftables1), with ctypes: run commands in
nft's own syntax and read what they print. No policy: torpor.parts.sockets.netlock decides
what to run.

One buffer of commands is one netlink transaction: every command of it takes effect, or
none does.
"""

from __future__ import annotations

import ctypes

LIBRARY = "libnftables.so.1"
NFT_CTX_DEFAULT = 0


class NftablesError(Exception):
    """libnftables is missing, or nftables refused a command; the message says which, in
    one line."""


def _load(name: str):
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise NftablesError(f"{name} cannot be loaded (install the package libnftables1)") from None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.restype = None
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class Nftables:
    """A libnftables context whose output and errors are kept in buffers, not printed.

    Use it as a context manager; run() returns what a command printed and raises
    NftablesError with nft's first error line when it fails."""

    def __init__(self, library: str | None = None):
        self._lib = _load(library or LIBRARY)
        self._ctx = self._lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not self._ctx:
            raise NftablesError("libnftables could not make a context")
        if self._lib.nft_ctx_buffer_output(self._ctx) or self._lib.nft_ctx_buffer_error(self._ctx):
            self.close()
            raise NftablesError("libnftables could not buffer its output")

    def run(self, commands: str) -> str:
        """Run `commands` (one or more lines of nft syntax, as one transaction); what they
        printed."""
        failed = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        errors = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if failed:
            first = next((line for line in errors.splitlines() if line.strip()), "")
            raise NftablesError(first.removeprefix("Error: ") or "nftables refused the command")
        return output

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> Nftables:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(commands: str) -> str:
    """Run `commands` in a context of their own; what they printed."""
    with Nftables() as nft:
        return nft.run(commands)
