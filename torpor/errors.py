"""The exceptions torpor raises: each carries a one-line message fit for a user.

Messages quote what images hold (paths, names) and images are input: a path holding a newline
must not print a second line that looks like torpor's own. Every message is made one line
here, once, by :func:`one_line`, whatever it quotes.
"""


def one_line(text: str) -> str:
    """`text` with every character that is not printable (newlines, other control and format
    characters, lone surrogates left by undecodable bytes) written as a backslash escape."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


class TorporError(Exception):
    """A checkpoint or restore could not be done; the message says why in one line."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class TargetError(TorporError):
    """The process to dump does not exist, cannot be traced, or is in a state torpor refuses."""


class UnsupportedError(TorporError):
    """The target uses something torpor does not checkpoint yet (a kind of fd, threads...)."""


class ImageError(TorporError):
    """An image directory is missing, incomplete or damaged."""


class RestoreError(TorporError):
    """A restore failed; everything it created has been killed."""
