"""The service started the way the README says (`./dev serve`), spoken to over HTTP.

Uses the embedded Redis (no REDIS_URL), a small demo data set (via BANDITREC_CONFIG) and a
free port; then stops the service and starts it again to see that state survived.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from banditrec.cli import main

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Served:
    def __init__(self, tmp_path: Path, port: int, extra: list[str] = ()):
        self.port, self.log = port, tmp_path / f"serve-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BANDITREC_REDIS_PREFIX")}
        env.update(BANDITREC_CONFIG=str(tmp_path / "config.toml"), BANDITREC_DATA_DIR=str(tmp_path / "data"))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["./dev", "serve", "--port", str(port), *extra], cwd=REPO, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"service exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if _call(port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.kill()
        pytest.fail(f"service did not answer /health in time:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.mark.slow
def test_serve_as_the_readme_says_then_restart(tmp_path):
    (tmp_path / "config.toml").write_text("[demo]\nn_items = 1500\nn_users = 150\n[index]\nn_trees = 10\n"
                                          "[snapshot]\ninterval_s = 3600.0\n"
                                          "[experiment]\nholdout_share = 0.3\n")  # u7 is in the personalized arm
    port = _free_port()
    served = Served(tmp_path, port)
    try:
        status, health = _call(port, "GET", "/health")
        assert status == 200 and health["items"] == 1500
        environ = (Path("/proc") / str(health["pid"]) / "environ").read_bytes().split(b"\0")
        assert any(v.startswith(b"MALLOC_ARENA_MAX=") for v in environ)  # the workers' allocator settings
        assert any(v.startswith(b"MALLOC_MMAP_THRESHOLD_=") for v in environ)
        status, rec = _call(port, "POST", "/recommend", {"user_id": "u7", "context": {"device": "mobile"}, "k": 5})
        assert status == 200 and rec["strategy"] == "personalized" and len(rec["items"]) == 5
        chosen = rec["items"][0]["item_id"]
        assert _call(port, "POST", "/feedback", {"event_id": rec["event_id"], "item_id": chosen, "reward": 1}) \
            == (200, {"status": "accepted", "duplicate": False})
        assert _call(port, "PUT", "/items/fresh-1", {"category": "books", "title": "A new novel"})[0] == 200
        assert _call(port, "POST", "/recommend", {"user_id": "u7", "k": 0})[0] == 400
        assert _call(port, "GET", "/missing")[0] == 404
        # the simulator's --http mode drives this running server
        out = tmp_path / "sim"
        assert main(["simulate", "--http", f"http://127.0.0.1:{port}", "--scenario", "small", "--rounds", "40",
                     "--seeds", "1", "--policies", "banditrec", "--jobs", "1", "--no-plots", "--out", str(out)]) == 0
        summary = (out / "summary.md").read_text()
        assert f"| banditrec@127.0.0.1:{port} |" in summary
        # ... and ends with the server's A/B report over that traffic, both arms served
        assert "### The server's A/B report (GET /experiments)" in summary
        ab = _call(port, "GET", "/experiments")[1]
        assert min(ab["arms"]["personalized"]["decisions"], ab["arms"]["holdout"]["decisions"]) > 5, ab["arms"]
        assert ab["arms"]["holdout"]["sessions"] > 0 and f"| decisions | {ab['arms']['personalized']['decisions']} |" \
            in summary
        assert served.stop() == 0
    finally:
        served.kill()

    served = Served(tmp_path, port)  # same data directory: embedded Redis and snapshot come back
    try:
        status, health = _call(port, "GET", "/health")
        assert health["items"] >= 1501 and health["model_version"] >= 1  # (+ the simulator's items)
        assert "nothing to do" in served.log.read_text()  # no rebuild on the second start
        assert served.stop() == 0
    finally:
        served.kill()
    assert not list((tmp_path / "data" / "redis").glob("*.settings")), "embedded Redis left running"
