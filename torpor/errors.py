"""The exceptions torpor raises: each carries a one-line message fit for a user."""


class TorporError(Exception):
    """A checkpoint or restore could not be done; the message says why in one line."""


class TargetError(TorporError):
    """The process to dump does not exist, cannot be traced, or is in a state torpor refuses."""


class UnsupportedError(TorporError):
    """The target uses something torpor does not checkpoint yet (a kind of fd, threads...)."""


class ImageError(TorporError):
    """An image directory is missing, incomplete or damaged."""


class RestoreError(TorporError):
    """A restore failed; everything it created has been killed."""
