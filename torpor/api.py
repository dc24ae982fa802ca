"""The Python API: dump(), restore() and check(); the command line only wraps these."""

from torpor.dumper import dump
from torpor.restorer import restore


def check() -> list[tuple[str, bool, str]]:
    """What this kernel offers torpor: (feature, available, explanation) per feature."""
    from torpor.checks import run_checks

    return run_checks()


__all__ = ["check", "dump", "restore"]
