"""Run a cloud's start script with ``tritonserver`` replaced by a recorder: the arguments the
script would start the server with, exactly, including its refusals (a non-zero exit)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


class ScriptRefused(RuntimeError):
    """The script exited without starting ``tritonserver``; the message is its own output."""


def recorded_argv(
    script: str, env: Mapping[str, str], workdir: Path, *, what: str = "the start script"
) -> list[str]:
    """``tritonserver``'s arguments when bash runs ``script`` with ``env`` (and a PATH holding
    the recorder first, then /usr/bin and /bin). ``workdir`` keeps the script and recorder."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "script").write_text(script)
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    recorder = bin_dir / "tritonserver"
    recorder.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > "$ARGV"\n')
    recorder.chmod(0o755)
    argv_file = work / "argv"
    argv_file.unlink(missing_ok=True)
    run_env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(work),
        "TMPDIR": str(work),
        **env,
        "ARGV": str(argv_file),
    }
    result = subprocess.run(
        ["bash", str(work / "script")],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 or not argv_file.exists():
        output = (result.stdout + result.stderr).strip()
        raise ScriptRefused(
            f"{what} refused to start tritonserver (exit {result.returncode}):\n{output}"
        )
    return argv_file.read_text().split("\0")[:-1]
