"""The pipeline's files in its state folder (PIPELINE_STATE_DIR): written whole or not at all, and every
failure to write or read one said in words that name the file and what to do.

The state folder holds what a run must not lose or must not misread: staged report responses, the report
ledgers, the locks, dlt's working folder. A full disk, a read-only mount
or a file that cannot be read there must stop a run with a message, never a bare `OSError`.

No Dagster imports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path


class StateFileError(RuntimeError):
    """A state file cannot be written or read; the message names it and says what to do."""


# the errors a person can fix on the machine (room, mount, access, hardware), each with what to do
_ADVICE = {
    errno.ENOSPC: "the disk holding {folder} is full: free space on it",
    errno.EDQUOT: "the disk quota of {folder} is used up: free space there or raise the quota",
    errno.EROFS: "{folder} is on a read-only file system: mount it writable",
    errno.EACCES: "this process may not write in {folder}: give its user write access",
    errno.EPERM: "this process may not write in {folder}: give its user write access",
    errno.EIO: "the disk holding {folder} reported an input/output error: check the disk",
}
FIXABLE_ERRNOS = frozenset(_ADVICE)


def advice(error: OSError, path: Path) -> str:
    """What to do about an OSError met writing `path` (or a file in the folder `path`)."""
    folder = path if path.is_dir() else path.parent
    text = _ADVICE.get(error.errno)
    if text is None:
        return f"the operating system refused it ({error.strerror or error}): check {folder}"
    return text.format(folder=folder)


def describe(error: OSError) -> str:
    """The OSError in a few words, without the path Python repeats in `str(error)`."""
    return error.strerror or type(error).__name__


def write_error_cause(exc: BaseException) -> OSError | None:
    """The OSError behind a failure (dlt and DuckDB wrap them), when it is one a person can fix (disk full,
    read-only, no access, I/O error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FIXABLE_ERRNOS:
            return exc
        # DuckDB reports its own file errors as text (duckdb.IOException: ... "<file>": No space left on device)
        text = str(exc)
        for code in (errno.ENOSPC, errno.EROFS):
            if os.strerror(code) in text:
                named = re.search(r'"([^"]+)"', text)
                return OSError(code, os.strerror(code), named[1] if named else None)
        exc = exc.__cause__ or exc.__context__
    return None


def fsync_folder(folder: Path) -> None:
    """Make a rename or a removal in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, what: str) -> None:
    """Replace `path` with `data` whole: a temporary file in the same folder, fsynced, renamed over it.

    A crash at any moment leaves the old file or the new one; a failure leaves the old one and raises a
    StateFileError that names `what` the file is, the file, and what to do.
    """
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
            temp = Path(f.name)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        temp = None
        fsync_folder(path.parent)
    except OSError as exc:
        raise StateFileError(f"could not write {what} {path} ({describe(exc)}): {advice(exc, path)}") from exc
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink()
