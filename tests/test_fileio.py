"""Reading user text and writing outputs atomically."""

import os
import stat
import threading

import pytest

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open, read_lines, write_lines, write_text


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n\r\nfour")
    assert read_lines(path) == ["one", "two", "", "four"]


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("ok\ncañón\n".encode("latin-1"))
    with pytest.raises(MtcError, match=r"latin1.txt:2: not valid UTF-8"):
        read_lines(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MtcError, match="cannot read"):
        read_lines(tmp_path / "absent.txt")


def test_interrupted_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_lines(path, ["old"])
    with pytest.raises(RuntimeError):
        with atomic_open(path) as stream:
            stream.write("half")
            raise RuntimeError("interrupted")
    assert read_lines(path) == ["old"]
    assert [item.name for item in tmp_path.iterdir()] == ["out.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    path = tmp_path / "out.txt"
    write_lines(path, ["x"])
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_gzip_text_is_atomic_readable_and_reproducible(tmp_path):
    import gzip

    from mtcompare.fileio import atomic_open_text

    contents = []
    for name in ("a.txt.gz", "b.txt.gz"):
        with atomic_open_text(tmp_path / name) as stream:
            stream.write("señor ||| lord\n")
        contents.append((tmp_path / name).read_bytes())
    assert contents[0] == contents[1]  # no time stamp in the header
    assert gzip.decompress(contents[0]).decode("utf-8") == "señor ||| lord\n"


def test_a_file_in_the_folder_path_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(MtcError, match="part of its folder path is a file"):
        write_lines(tmp_path / "afile" / "out.txt", ["x"])


def test_a_symbolic_link_is_written_through(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text(link, "new\n")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new\n"


def test_a_pipe_is_written_to_directly(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    write_text(pipe, "through the pipe\n")
    reader.join(timeout=10)
    assert received == ["through the pipe\n"]
    assert stat.S_ISFIFO(pipe.stat().st_mode)  # still a pipe, not a file put in its place


def test_a_stream_path_is_written_in_place_not_renamed_over(tmp_path):
    # /dev/stdout of a shell redirected into a file leads to that file: a rename
    # would put a new file in its place and lose what the shell writes around it
    target = tmp_path / "redirected.txt"
    with open(target, "w", encoding="utf-8") as shell_stdout:
        shell_stdout.write("before\n")
        shell_stdout.flush()
        write_text(f"/proc/self/fd/{shell_stdout.fileno()}", "written\n")
        shell_stdout.write("after\n")
    assert target.read_text(encoding="utf-8").splitlines()[0] == "before"
    assert "after" in target.read_text(encoding="utf-8")
