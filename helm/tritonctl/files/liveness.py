# Exec liveness probe for the tritonserver container (probes.liveness.pythonStubs).
# Fails when Triton is not live, or when a Python backend stub died: Triton 2.51 neither
# restarts a dead stub nor reports it on /v2/health/*, so the model stays "ready" while every
# request to it fails ("Stub process ... is not healthy"). The dead stub stays a zombie child
# of tritonserver; finding one makes the kubelet restart the container. Only the standard
# library: the NGC tritonserver images ship python3. Argument: the HTTP port.
# STUB_PARENT_PID (unset in the pod) limits the scan to one server's stubs, for tests.
import os
import sys
import urllib.request

try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/health/live", timeout=4).close()
except OSError as error:  # refused, timed out, or an HTTP error status
    sys.exit(f"tritonserver is not live: {error}")
parent = os.environ.get("STUB_PARENT_PID")
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        continue
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    # The kernel keeps 15 characters of the name: triton_python_backend_stub -> triton_python_b.
    if name == "triton_python_b" and state in "ZX" and parent in (None, ppid):
        sys.exit(f"Python backend stub {pid} is dead (state {state}): restart the server")
