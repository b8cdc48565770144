"""Start/stop the rtcd binary for a test (and optional network-namespace helpers).

The daemon is bound to 127.0.0.1 on free ports, logs at debug level to a file under
e2e/aiortc/logs/, and is stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOG_DIR = HERE / "logs"


def daemon_binary() -> Path:
    """$RTCD_BIN, else target/debug/rtcd (built with cargo if missing)."""
    env = os.environ.get("RTCD_BIN")
    if env:
        p = Path(env)
        if not p.is_file():
            raise RuntimeError(f"RTCD_BIN={env} does not exist")
        return p
    p = REPO / "target" / "debug" / "rtcd"
    if not p.is_file():
        subprocess.run(["cargo", "build", "--bin", "rtcd"], cwd=REPO, check=True, timeout=1800)
    return p


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_both() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (ICE uses the same number for both).
    rtcd (like upstream) only accepts ICE ports in 80-49151, below the ephemeral range."""
    for _ in range(200):
        p = random.randint(20000, 49151)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket(
                socket.AF_INET, socket.SOCK_STREAM
            ) as t:
                u.bind(("127.0.0.1", p))
                t.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


class Daemon:
    def __init__(self, name: str, netns: str | None = None, extra_env: dict | None = None):
        self.name = name
        self.netns = netns
        self.extra_env = extra_env or {}
        self.tmp = Path(tempfile.mkdtemp(prefix="rtcd-aiortc-"))
        self.proc: subprocess.Popen | None = None
        self.http_port = 0
        self.ice_port = 0
        LOG_DIR.mkdir(exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 15.0) -> "Daemon":
        binary = daemon_binary()
        # In a fresh namespace every port is free; picking them in the root namespace is fine.
        self.http_port = free_port()
        self.ice_port = free_port_both()
        env = dict(os.environ)
        env.update(
            {
                "RTCD_API_HTTP_LISTENADDRESS": f"127.0.0.1:{self.http_port}",
                "RTCD_API_SECURITY_ALLOWSELFREGISTRATION": "true",
                "RTCD_RTC_ICEADDRESSUDP": "127.0.0.1",
                "RTCD_RTC_ICEADDRESSTCP": "127.0.0.1",
                "RTCD_RTC_ICEPORTUDP": str(self.ice_port),
                "RTCD_RTC_ICEPORTTCP": str(self.ice_port),
                "RTCD_STORE_DATASOURCE": str(self.tmp / "db"),
                "RTCD_LOGGER_ENABLEFILE": "false",
                "RTCD_LOGGER_ENABLECONSOLE": "true",
                "RTCD_LOGGER_CONSOLELEVEL": os.environ.get("RTCD_LOGGER_CONSOLELEVEL", "debug"),
                "RTCD_LOGGER_ENABLECOLOR": "false",
            }
        )
        env.update(self.extra_env)
        cmd = [str(binary), "--config", str(self.tmp / "absent.toml")]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd  # ip execs: the PID is rtcd's
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.tmp, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rtcd exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with in_netns(self.netns):
                    with urllib.request.urlopen(f"{self.base_url}/version", timeout=1) as r:
                        if r.status == 200:
                            return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rtcd did not come up in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if hasattr(self, "_log"):
            self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# -- network namespaces ----------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def in_netns(name: str | None):
    """Run the block with this thread in network namespace ``name`` (sockets created inside
    stay in it). ``None`` = no change."""
    if not name:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def netns_available() -> str | None:
    """None if we can create namespaces and have nft; else the reason why not."""
    if os.geteuid() != 0:
        return "needs root for ip netns / nft"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' not installed (scripts/deps.sh --aiortc installs it)"
    return None


def run(cmd: list[str], input: str | None = None) -> None:
    r = subprocess.run(cmd, input=input, text=True, capture_output=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


class Netns:
    """A uniquely named loopback-only network namespace, deleted on exit."""

    def __init__(self, prefix: str = "rtcd-aiortc"):
        self.name = f"{prefix}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"

    def __enter__(self) -> "Netns":
        run(["ip", "netns", "add", self.name])
        try:
            run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        except Exception:
            run(["ip", "netns", "del", self.name])
            raise
        return self

    def nft(self, ruleset: str) -> None:
        run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], input=ruleset)

    def nft_list(self) -> str:
        r = subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "list", "ruleset"],
            text=True, capture_output=True, timeout=20,
        )
        return r.stdout

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)
