"""A banditrec service for a benchmark's client: `banditrec serve` on a free loopback port in a
process group of its own, with its own embedded Redis and data dir (`Service`), and one
keep-alive HTTP connection to it (`Client`). `benchmarks.realdata` replays real data through
these; `benchmarks.http_load.Server` runs the 1M-item bench's server instead (its config,
its workers)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import ROOT
from benchmarks.http_load import free_port


def banditrec_cmd() -> list[str]:
    script = Path(sys.executable).parent / "banditrec"
    return [str(script)] if script.exists() else [sys.executable, "-m", "banditrec.cli"]


def clean_env() -> dict:
    """Our environment without REDIS_URL and BANDITREC_*: the child uses its own embedded Redis,
    its own data dir and only the config file we pass."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("BANDITREC_")}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


class Service:
    """`banditrec serve` on a free loopback port, in a process group of its own."""

    def __init__(self, data_dir: Path, log_path: Path, config: Path | None = None, ready_timeout_s: float = 300):
        self.port = free_port()
        self.data_dir, self.log_path = Path(data_dir), Path(log_path)
        cmd = [*banditrec_cmd(), "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if config:
            cmd += ["--config", str(config)]
        self.command = cmd
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"banditrec serve exited with {self.proc.returncode}:\n{self.tail()}")
            probe = Client(self.port, timeout=5)
            try:
                if probe.call("GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            finally:
                probe.close()
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"banditrec serve did not answer GET /ready within {ready_timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGINT (it saves a final snapshot and stops its embedded Redis), then SIGKILL to the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode

    @property
    def stopped(self) -> bool:
        return self.proc.poll() is not None


class Client:
    """One keep-alive HTTP connection; reconnects once when the server closed it."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port, self.timeout, self.conn = port, timeout, None

    def call(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, data, headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            try:
                return resp.status, json.loads(raw) if raw else {}
            except ValueError:
                return resp.status, {"raw": raw[:200].decode(errors="replace")}
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
