"""Every error a user can cause derives from `UserError`.

`plumbing.run_command` turns a `UserError` into one line `prog: error: <message>` and exit status 2;
any other exception is a bug and keeps its traceback. The subclasses keep the built-in base that code
and tests catch them by (a bad config is also a `ValueError`, a missing checkpoint a `FileNotFoundError`).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input that the user can fix; the message says what to do."""


class ConfigError(UserError, ValueError):
    """A bad configuration: unknown key, wrong type, missing file."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message names the path and keys."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist (nothing was loaded)."""


class DatasetError(UserError, ValueError):
    """A dataset folder that cannot be used as given; the message says what to fix."""


class ImageReadError(UserError, OSError):
    """An image file that cannot be decoded."""


class DeviceError(UserError, ValueError):
    """A device that does not exist on this machine."""


class PrecisionError(UserError, ValueError):
    """An unknown precision name."""


class RunFolderError(ConfigError, CheckpointError):
    """The run folder is in use, or holds a run that this start must not continue."""


class MissingExtraError(UserError, ImportError):
    """An optional dependency that this option needs is not installed; the message names the pip extra."""


class LossDivergedError(UserError, FloatingPointError):
    """The training loss became NaN or infinite (lower the learning rate or use fp32; the last good
    checkpoint is kept)."""


class NonFiniteError(UserError, FloatingPointError):
    """Weights or features that hold NaN or infinite values; the message names the tensor or the batch."""
