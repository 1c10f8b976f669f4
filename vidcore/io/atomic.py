"""Write files and folders atomically: into a hidden temporary name beside the target, then moved into place.

One permission rule for everything vidcore writes: regular files get ``0o644 & ~umask`` and folders
``0o755 & ~umask`` (readable by others, writable only by the owner; a stricter umask such as 077 wins).
The modes are given to the kernel at creation, which applies the umask, so the umask is never read or
changed (``os.umask`` would change it for every thread of the process).

A target that exists is replaced only when the caller asked for it, and only if it is a regular file
(a symlink to one is replaced by the new file, its target left alone): a directory, a device such as
``/dev/full``, a FIFO or a dangling symlink is refused. On any error the temporary file is removed, so
no partial file is ever left behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o644
FOLDER_MODE = 0o755


def _hidden_name(folder: Path, name: str, tag: str) -> Path:
    return folder / f".{name}.{secrets.token_hex(4)}.{tag}"


def check_target(
    path: str | os.PathLike, overwrite: bool, flag: str = "overwrite=True", need_bytes: int = 0
) -> Path:
    """Validate an output file path; return it as a Path.

    Its folder must exist and be writable, with at least ``need_bytes`` free (an estimate of the file to
    come, checked before the work that makes it); an existing entry must be a regular file (ValueError
    otherwise) and is refused unless ``overwrite`` (FileExistsError naming ``flag``, the option that
    allows it).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {str(path.parent)!r} is not writable")
    if need_bytes > 0:
        free = shutil.disk_usage(path.parent).free
        if free < need_bytes:
            raise OSError(
                f"output folder {str(path.parent)!r} has {free / 2**20:.1f} MiB free; the file needs about "
                f"{need_bytes / 2**20:.1f} MiB"
            )
    if os.path.lexists(path):
        if not path.is_file():
            raise ValueError(
                f"{str(path)!r} exists and is not a regular file ({_kind(path)}); refusing to replace it"
            )
        if not overwrite:
            raise FileExistsError(f"{str(path)!r} already exists; pass {flag} to replace it")
    return path


def _kind(path: Path) -> str:
    """What a non-regular path is, in words, for error messages."""
    if path.is_symlink() and not path.exists():
        return "a dangling symlink"
    prefix = "a symlink to " if path.is_symlink() else ""
    mode = path.stat().st_mode
    for test, word in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return prefix + word
    return prefix + "not a regular file"


def _create_temp_file(folder: Path, name: str) -> tuple[Path, int]:
    """Create an empty hidden file beside the target (FILE_MODE less the umask); return it and its mode."""
    while True:
        tmp = _hidden_name(folder, name, "tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            continue
        try:
            return tmp, stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)


def _publish(tmp: Path, path: Path, overwrite: bool, flag: str) -> None:
    """Move ``tmp`` to ``path``; without ``overwrite`` a hard link makes the no-clobber check atomic."""
    if overwrite:
        check_target(path, overwrite=True, flag=flag)  # something else may have appeared meanwhile
        os.replace(tmp, path)
        return
    exists = FileExistsError(f"{str(path)!r} already exists; pass {flag} to replace it")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise exists from None
    except OSError:
        # Filesystems without hard links: check again and rename (a tiny race window remains).
        if os.path.lexists(path):
            raise exists from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextmanager
def atomic_write(
    path: str | os.PathLike, overwrite: bool = False, flag: str = "overwrite=True"
) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary file already exists (empty, with the permission rule's mode) so writers that open it by
    name keep that mode. Without ``overwrite`` an existing ``path`` is refused before and after writing
    (a file that appeared meanwhile is never clobbered). On any error the temporary file is removed.
    """
    path = check_target(path, overwrite, flag)
    tmp, mode = _create_temp_file(path.parent, path.name)
    try:
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)  # a writer that recreated the file by name got the umask's default mode
        _publish(tmp, path, overwrite, flag)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(
    path: str | os.PathLike, data: bytes, overwrite: bool = False, flag: str = "overwrite=True"
) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); return the path."""
    with atomic_write(path, overwrite, flag) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(
    path: str | os.PathLike, text: str, overwrite: bool = False, flag: str = "overwrite=True"
) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write`); return the path."""
    return write_bytes(path, text.encode("utf-8"), overwrite, flag)


def _apply_rule(folder: Path, folder_mode: int) -> None:
    """Give every entry under ``folder`` the permission rule (symlinks are left as they are)."""
    file_mode = FILE_MODE & folder_mode  # FILE_MODE's bits all lie in FOLDER_MODE: this is 0o644 & ~umask
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), folder_mode)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), file_mode)


@contextmanager
def atomic_folder(
    path: str | os.PathLike, overwrite: bool = False, flag: str = "overwrite=True"
) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``path`` to fill; on success it replaces ``path`` whole.

    A reader never sees a mix of old and new files: an existing folder is renamed aside, the new one
    renamed into place, and the old one deleted (restored if the swap fails). Everything inside gets the
    permission rule. An existing ``path`` must be a real directory (not a symlink) and needs
    ``overwrite``. On any error the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    if os.path.lexists(path):
        if path.is_symlink() or not path.is_dir():
            raise ValueError(
                f"{str(path)!r} exists and is not a folder ({_kind(path)}); refusing to replace it"
            )
        if not overwrite:
            raise FileExistsError(f"{str(path)!r} already exists; pass {flag} to replace it")
    while True:
        tmp = _hidden_name(path.parent, path.name, "tmp")
        try:
            os.mkdir(tmp, FOLDER_MODE)
            break
        except FileExistsError:
            continue
    old: Path | None = None
    try:
        yield tmp
        _apply_rule(tmp, stat.S_IMODE(os.stat(tmp).st_mode))
        if os.path.lexists(path):
            if not overwrite:
                raise FileExistsError(f"{str(path)!r} already exists; pass {flag} to replace it")
            old = _hidden_name(path.parent, path.name, "old")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not os.path.lexists(path):
            os.replace(old, path)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)
