"""Reading user text safely and writing outputs atomically.

Every output goes to a temporary file beside its target and is renamed into
place, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from mtcompare.errors import MtcError


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file, without line ends.

    A byte-order mark and CRLF line ends are accepted. Invalid UTF-8 raises
    :class:`MtcError` naming the file and the line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MtcError(f"{path}: cannot read ({error.strerror})") from None
    return decode_lines(data, str(path))


def decode_lines(data: bytes, source: str) -> list[str]:
    """Split bytes into lines and decode each as UTF-8, naming ``source`` on error."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise MtcError(
                f"{source}:{number}: not valid UTF-8 (byte {error.start + 1} of the line); "
                "convert the file to UTF-8, e.g. with iconv"
            ) from None
    return lines


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    A symbolic link is written through: the file it points to is replaced,
    the link stays. A path that is not a regular file (a terminal, a pipe)
    or that names a stream (``/dev/stdout``, ``/proc/self/fd/1``, which may
    lead to a file the shell redirected into) is written to directly: a
    rename there would replace the shell's file instead of writing into it.
    """
    path = Path(path)
    if path.is_dir():
        raise MtcError(f"{path}: is a folder; give a file name")
    encoding = {} if "b" in mode else {"encoding": "utf-8"}
    descriptor = _stream_descriptor(path)
    if descriptor is not None:
        # a copy of our own descriptor shares its file position with the shell's
        with os.fdopen(os.dup(descriptor), mode, **encoding) as stream:
            yield stream
        return
    if str(path.absolute()).startswith(("/dev/", "/proc/")) or (
        path.exists() and not path.is_file()
    ):
        with open(path, mode, **encoding) as stream:
            yield stream
        return
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MtcError(f"{path}: cannot create it, a part of its folder path is a file; "
                       "choose another path") from None
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    binary = "b" in mode
    try:
        with os.fdopen(handle, mode, **({} if binary else {"encoding": "utf-8"})) as stream:
            yield stream
        # mkstemp creates the file as 0600; give it the mode a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _stream_descriptor(path: Path) -> int | None:
    """The file descriptor that ``/dev/stdout``, ``/dev/fd/3`` or
    ``/proc/self/fd/3`` stand for, or None for any other path."""
    text = str(path.absolute())
    named = {"/dev/stdout": 1, "/dev/stderr": 2}
    if text in named:
        return named[text]
    for prefix in ("/dev/fd/", "/proc/self/fd/", f"/proc/{os.getpid()}/fd/"):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            return int(text[len(prefix):])
    return None


@contextlib.contextmanager
def atomic_open_text(path: str | Path) -> Iterator[IO[str]]:
    """A UTF-8 text stream onto ``path`` (atomic), gzip-compressed for a ``.gz`` name.

    The gzip header carries no time stamp, so the same content gives the same bytes.
    """
    path = Path(path)
    if path.suffix != ".gz":
        with atomic_open(path, "w") as stream:
            yield stream
        return
    with atomic_open(path, "wb") as raw:
        # level 6 is zlib's default trade-off; gzip's own default 9 is far slower
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as compressed:
            with io.TextIOWrapper(compressed, encoding="utf-8", newline="\n") as stream:
                yield stream


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Write one line per item atomically."""
    with atomic_open(path) as stream:
        for line in lines:
            stream.write(line + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_open(path) as stream:
        stream.write(text)
