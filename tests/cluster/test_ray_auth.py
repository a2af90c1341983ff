"""Ray's token authentication kept on for `ray start` + `ray job submit`, as the README sets it up."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from actors.common import free_port

from ..conftest import ROOT

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


# the job's driver joins the cluster: it, too, needs the token (inherited from the `ray start` environment)
JOB = "import ray; ray.init(); print('job ran with the token on', ray.cluster_resources()['CPU'], 'CPU')"


HTTP_401 = re.compile(r"(?<![\d:])401(?!\d)")
"""An HTTP 401 in Ray's answer, not the digits inside a port number (``127.0.0.1:46401``)."""


def _submit(address: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY, "job", "submit", "--address", address, "--", "python", "-c", JOB],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ray_start_with_a_token_runs_jobs_that_carry_it_and_refuses_the_others(tmp_path):
    token_file = tmp_path / "ray_token"
    token_file.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    token_file.chmod(0o600)
    # HOME of its own (Ray also reads ~/.ray/auth_token), a temp dir and ports of its own: nothing here touches,
    # or is touched by, another Ray instance on the machine; the socket paths under --temp-dir must stay short
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    base["HOME"] = str(home)
    with_token = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    dashboard = free_port()
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard,
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    worker_ports = free_port()
    cmd = [RAY, "start", "--head", "--block", "--num-cpus=1", f"--temp-dir={temp_dir}", "--dashboard-host=127.0.0.1"]
    cmd += [f"{flag}={port}" for flag, port in ports.items()]
    cmd += [f"--min-worker-port={worker_ports}", f"--max-worker-port={worker_ports + 20}"]
    head_log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed below
    head = subprocess.Popen(cmd, env=with_token, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 240
        accepted = None
        while time.time() < deadline and head.poll() is None:
            accepted = _submit(address, with_token)
            text = (accepted.stdout + accepted.stderr).lower()
            if accepted.returncode == 0 or "unauthorized" in text or HTTP_401.search(text) is not None:
                break  # the dashboard answered (a connection error while it starts: try again)
            time.sleep(3)
        assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
        assert accepted is not None and accepted.returncode == 0, (accepted.stdout + accepted.stderr)[-3000:]
        assert "job ran with the token on 1.0 CPU" in accepted.stdout and "succeeded" in accepted.stdout

        for env in (
            {**base, "RAY_AUTH_MODE": "disabled"},  # no token sent
            {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},  # another token
        ):
            refused = _submit(address, env)
            text = (refused.stdout + refused.stderr).lower()
            assert refused.returncode != 0 and "job ran" not in text, text[-3000:]
            assert "unauthorized" in text or "authentication" in text or HTTP_401.search(text) is not None, text[
                -3000:
            ]

        # scripts/scale_rollout.py reaches the cluster with the token (and finds no such run), and says what is
        # missing without it
        scale = [sys.executable, str(ROOT / "scripts" / "scale_rollout.py"), "--run", "norun", "--status"]
        scale += ["--address", f"127.0.0.1:{ports['--port']}"]
        p = subprocess.run(scale, env=with_token, capture_output=True, text=True, timeout=180)
        assert p.returncode == 2 and "no running job 'norun'" in p.stderr, p.stderr[-3000:]
        p = subprocess.run(
            scale,
            env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode == 2 and "InvalidAuthToken" in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
        assert "this client needs its token: RAY_AUTH_MODE=token" in p.stderr.splitlines()[-1], p.stderr[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        head_log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
