"""Running ``zeropur-bench`` as a user does, in a subprocess (exit status, stderr, tracebacks as they really are),
and what the bad-input tests assert about it (tests/test_cli.py, tests/test_bad_input.py)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

# os.replace / os.link raising ENOSPC for JSON files under $ZP_ENOSPC_DIR: a full disk without mount rights
ENOSPC_SITE = """
import errno, os
def _full(real):
    def call(src, dst, *a, **k):
        root = os.environ.get("ZP_ENOSPC_DIR")
        if root and os.path.abspath(dst).startswith(root) and os.fspath(dst).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))
        return real(src, dst, *a, **k)
    return call
os.replace = _full(os.replace)
os.link = _full(os.link)
"""


def zb(args: list[str], tmp: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m zeropur_bench ARGS`` in ``tmp`` (offline, umask 022)."""
    full = {**os.environ, "ZEROPUR_BENCH_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "zeropur_bench", *args], cwd=tmp, env=full, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=lambda: os.umask(0o022))


def refused(r: subprocess.CompletedProcess, needle: str) -> None:
    """Exit 2, one line on stderr that starts with 'error: ' and says ``needle``, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under ``root`` (symlinks not followed): per path its file type, mode, inode (a replaced file
    gets a new one) and what it holds: a regular file's bytes and mtime, a symlink's target, a device's number."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                content = (p.read_bytes(), st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = st.st_rdev
            else:
                content = None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_ino, content)
    return out
