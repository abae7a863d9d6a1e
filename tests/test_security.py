"""What another local user can do to `tritonctl serve`, and claims of SECURITY.md checked in code.

The second user is made by the test (``useradd``) and runs a script with the project's own
client libraries: it reads every process's command line (what ``ps`` shows) for a key, then
tries what a key would allow: load a model whose ``model.py`` it sends (code that would run as
the server's user), register a stub's shared memory, and read that memory directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli_serve import Spawn, _serve, _wait_ready
from tests.tiny_repository import make_tiny_repository
from tritonctl import rundir

ROOT = Path(__file__).resolve().parents[1]

INTRUDER = r"""
import base64, glob, json, sys, urllib.error, urllib.request
import tritonclient.grpc as grpcclient

http_port, grpc_port, marker, regions_glob = sys.argv[1:5]
seen = []  # (header, value) of every restricted-API flag on the target's command line
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        argv = [a.decode(errors="replace") for a in open(path, "rb").read().split(b"\0")]
    except OSError:
        continue
    pairs = set(zip(argv, argv[1:]))
    if "--http-port=" + http_port not in argv and ("--http-port", http_port) not in pairs:
        continue  # another server on this machine: not the one under attack
    for arg in argv:
        if arg.startswith(("--http-restricted-api=", "--grpc-restricted-protocol=")):
            header, value = arg.split(":", 1)[1].rsplit("=", 1)
            seen.append((header, value))
        elif arg.startswith("--admin-key"):
            seen.append(("admin-key", arg.split("=", 1)[-1]))
attempts = [{}] + [{h: v} for h, v in seen] + [{"triton-grpc-protocol-" + h: v} for h, v in seen]
code = "class TritonPythonModel:\n    def initialize(self, args):\n        open(%r, 'w').write('ran')\n" % marker
config = json.dumps({"name": "pwn", "backend": "python", "max_batch_size": 0,
    "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
    "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]})
regions = sorted(glob.glob(regions_glob))
out = {"seen": seen, "http": [], "grpc": [], "shm": [], "read": []}

def post(path, body, headers):
    request = urllib.request.Request("http://127.0.0.1:%s%s" % (http_port, path), data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except ValueError as error:  # a header no client can send
        return "unsendable: %s" % error

load = json.dumps({"parameters": {"config": config,
    "file:1/model.py": base64.b64encode(code.encode()).decode()}}).encode()
client = grpcclient.InferenceServerClient("127.0.0.1:%s" % grpc_port)
for headers in attempts:
    out["http"].append(post("/v2/repository/models/pwn/load", load, headers))
    for region in regions[:1]:
        body = json.dumps({"key": region[len("/dev/shm"):], "offset": 0, "byte_size": 64}).encode()
        out["shm"].append(post("/v2/systemsharedmemory/region/stolen/register", body, headers))
    try:
        client.load_model("pwn", config=config, files={"file:1/model.py": code.encode()},
                          headers=headers or None)
        out["grpc"].append("loaded")
    except Exception as error:
        out["grpc"].append(str(error)[:160])
for region in regions:
    try:
        open(region, "rb").read(16)
        out["read"].append("readable " + region)
    except OSError as error:
        out["read"].append(type(error).__name__)
print(json.dumps(out))
"""


def _python_for(user: str) -> list[str] | None:
    """A command running this project's Python (and its packages) as ``user``, if one works."""
    site = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, getattr(sys, "_base_executable", ""), f"/usr/bin/{version}"):
        if not python or not Path(python).exists():
            continue
        command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={site}", python]
        probe = subprocess.run(
            [*command, "-c", "import tritonclient.grpc, tritonclient.http"],
            capture_output=True,
            cwd="/",
            timeout=60,
            check=False,
        )
        if probe.returncode == 0:
            return command
    return None


@pytest.fixture(scope="module")
def intruder() -> Iterator[list[str]]:
    """A command line that runs Python as a second, unprivileged user made for this test."""
    if os.geteuid() != 0:
        pytest.skip("making a second user needs root (useradd); run the suite as root in CI")
    if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("runuser")):
        pytest.skip("useradd, userdel or runuser is not installed")
    name = f"tctl{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        command = _python_for(name)
        if command is None:
            pytest.skip(f"no Python with tritonclient that user {name} may run here")
        yield command
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def test_another_user_finds_no_key_and_cannot_load_code(
    tmp_path: Path, spawn: Spawn, intruder: list[str]
) -> None:
    repo = make_tiny_repository(tmp_path / "repo")
    tmp_path.chmod(0o755)  # the second user needs no access to it, but may see it
    process, ports = _serve(spawn, repo, "--exit-timeout", "5")
    _wait_ready(ports["grpc"], process)
    marker = Path("/tmp") / f"tritonctl-pwned-{uuid.uuid4().hex}"
    # Every region of this test session's servers (this one's, and those other tests' servers
    # made by reloads since they started); not other sessions' on a shared machine.
    regions = f"/dev/shm/tritonctl_{rundir.session_tag()}_*"
    try:
        run = subprocess.run(
            [*intruder, "-c", INTRUDER, *map(str, (ports["http"], ports["grpc"], marker, regions))],
            capture_output=True,
            text=True,
            cwd="/",
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        code_ran = marker.exists()
    finally:
        marker.unlink(missing_ok=True)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert not code_ran, f"the second user's model.py ran as the server's user: {result}"
    # What ps shows is a header no client can send (a ':' in its name), never a key.
    assert result["seen"], "the restricted-API flags are on tritonserver's command line"
    assert all(":" in header for header, _ in result["seen"]), result["seen"]
    for status in result["http"]:
        assert status in (403,) or str(status).startswith("unsendable"), result["http"]
    for answer in result["grpc"]:
        assert answer != "loaded" and ("restricted" in answer or "invalid" in answer), answer
    assert result["shm"] and all(s == 403 or str(s).startswith("unsendable") for s in result["shm"])
    assert result["read"] and all(r == "PermissionError" for r in result["read"]), result["read"]


# Claims of SECURITY.md that are about the code base ------------------------------------------

SCANNED = ("src", "python_backends", "loadtests", "scripts", "helm", "docker")


def test_no_pickle_or_unsafe_torch_load_anywhere() -> None:
    """No unsafe deserialisation: no pickle / joblib / torch.load / np.load(allow_pickle=True)."""
    unsafe = re.compile(
        r"\bimport pickle\b|\bfrom pickle\b|\bpickle\.|\bcPickle\b|\bjoblib\.load\b|"
        r"\bdill\b|\bcloudpickle\b|allow_pickle\s*=\s*True|\btorch\.load\s*\("
    )
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if unsafe.search(line) and "weights_only=True" not in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_every_test_security_md_names_exists() -> None:
    """Each claim in SECURITY.md names the test that would fail if it were false: it must exist."""
    text = (ROOT / "SECURITY.md").read_text()
    named = sorted(set(re.findall(r"tests/(test_\w+\.py)::(\w+)", text)))
    assert len(named) >= 20, named
    missing = []
    for file, test in named:
        source = (ROOT / "tests" / file).read_text() if (ROOT / "tests" / file).exists() else ""
        if not re.search(rf"^def {test}\(", source, re.MULTILINE):
            missing.append(f"tests/{file}::{test}")
    assert not missing, "SECURITY.md names tests that do not exist: " + ", ".join(missing)
