"""torpor: checkpoint a running Linux process to a directory of images and restore it later.

The Python API is :func:`dump`, :func:`restore` and :func:`check`; the command line wraps them.
"""

from torpor.errors import ImageError, RestoreError, TargetError, TorporError, UnsupportedError

__all__ = [
    "ImageError",
    "RestoreError",
    "TargetError",
    "TorporError",
    "UnsupportedError",
    "check",
    "dump",
    "restore",
]


def dump(*args, **kwargs):
    """Checkpoint a process; see :func:`torpor.api.dump`."""
    from torpor import api

    return api.dump(*args, **kwargs)


def restore(*args, **kwargs):
    """Restore a checkpoint; see :func:`torpor.api.restore`."""
    from torpor import api

    return api.restore(*args, **kwargs)


def check(*args, **kwargs):
    """Report what this kernel supports; see :func:`torpor.api.check`."""
    from torpor import api

    return api.check(*args, **kwargs)
