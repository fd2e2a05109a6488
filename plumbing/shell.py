"""The one shell of every command: a user error is one line and exit 2, everything else is a bug.

`run_command(prog, work)` calls `work()` and returns the process's exit status: `work`'s own (0 when it
returns None); 2 with `prog: error: <one line>` on stderr for a `UserError`; 1 with one line naming the
path and the free space for a full disk. Any other exception keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .errors import UserError
from .runfolder import disk_full_message


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace and newlines folded)."""
    return " ".join(str(error).split())


def fail(prog: str, message: str, status: int = 2) -> int:
    """Print `prog: error: message` on stderr; returns `status` for the caller to return."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def run_command(prog: str, work: Callable[[], int | None]) -> int:
    """Run one command's `work` and map what it raises to an exit status (see the module docstring)."""
    try:
        status = work()
    except UserError as e:
        return fail(prog, one_line(e))
    except (OSError, RuntimeError) as e:  # a full disk: torch.save raises a RuntimeError around it
        line = disk_full_message(e)
        if line is None:
            raise
        return fail(prog, line, status=1)
    return 0 if status is None else int(status)
