"""kiln-client against a real coordinator and worker: a small SmolLM2 job submitted,
watched to SUCCEEDED through the progress feed, its output checked; a second job cancelled;
the workers listed; and the errors a user sees for a bad endpoint, a missing token, an
unknown job and a bad spec field."""

import os
import subprocess
import sys

import pytest

from kiln_client import Client, CoordinatorError, NoAnswer, UnknownJob, UsageError
from kiln_client.proto import job_pb2

from conftest import free_port_pair, small_job


def test_submit_watch_status(client, cluster):
    out = cluster.tmp / "watched-q4_0.gguf"
    job = client.submit(**small_job(out, name="py-watch"))
    seen_states = []
    views = 0
    for view in client.watch(job):
        views += 1
        if not seen_states or seen_states[-1] != view.state_name:
            seen_states.append(view.state_name)
    assert view.state_name == "succeeded", (seen_states, view.error, cluster.logs())
    assert views >= 1 and view.blocks_total == 30 and view.blocks_done == 30
    with open(out, "rb") as f:
        assert f.read(4) == b"GGUF"
    status = client.status(job)
    assert status.state == job_pb2.JOB_STATE_SUCCEEDED
    assert status.blocks_done == status.blocks_total == 30
    assert status.spec.output_path == str(out)


def test_cli_submit_wait_with_bars(cluster):
    out = cluster.tmp / "cli-q4_0.gguf"
    job = small_job(out)
    args = [
        "submit",
        "--wait",
        "--bars",
        "--model",
        job["model"],
        "--calib",
        job["calib"],
        "--out",
        str(out),
        "--samples",
        "4",
        "--seqlen",
        "64",
        "--method",
        "rtn",
        "--mode",
        "parallel",
    ]
    r = run_cli(cluster, *args)
    assert r.returncode == 0, r.stderr + cluster.logs()
    job_id = r.stdout.splitlines()[0]
    assert f"job {job_id} succeeded: {out}" in r.stdout
    assert "block 29" in r.stderr and "100%" in r.stderr  # tqdm's bars
    assert out.is_file()
    s = run_cli(cluster, "status", job_id)
    assert s.returncode == 0 and f"{job_id}: succeeded, 30/30 blocks" in s.stdout, (
        s.stdout + s.stderr
    )


def test_cancel(client, cluster):
    # GPTQ, sequential, more samples: long enough to be cancelled before it ends.
    spec = small_job(cluster.tmp / "cancelled.gguf", method="gptq", mode="sequential", samples=16)
    job = client.submit(**spec)
    assert client.cancel(job, "test") == job_pb2.JOB_STATE_CANCELLED
    final = client.wait(job)
    assert final.state_name == "cancelled"
    status = client.status(job)
    assert status.state == job_pb2.JOB_STATE_CANCELLED and "test" in status.error.message
    r = run_cli(cluster, "watch", job)
    assert r.returncode == 1 and f"job {job} was cancelled" in r.stderr


def test_workers(client, cluster):
    workers = client.workers()
    assert [w.worker_id for w in workers] == ["w1"]
    r = run_cli(cluster, "workers")
    assert r.returncode == 0 and r.stdout.startswith("w1\t"), r.stdout + r.stderr


def test_errors_name_what_to_fix(cluster):
    with pytest.raises(UsageError, match='endpoint "localhost:5555"'):
        Client("localhost:5555")
    with Client(f"tcp://127.0.0.1:{free_port_pair()}", timeout=1) as nobody:
        with pytest.raises(NoAnswer, match="no coordinator answers at"):
            nobody.workers()
    with Client(cluster.endpoint, timeout=5) as tokenless:
        with pytest.raises(CoordinatorError, match="requires its token") as e:
            tokenless.workers()
        assert e.value.field == "auth_token" and e.value.code == "ERROR_CODE_UNAUTHORIZED"
    with pytest.raises(UsageError, match="token_file /nonexistent/token: cannot read the token"):
        Client(cluster.endpoint, token_file="/nonexistent/token")
    with Client(cluster.endpoint, token_file=cluster.token_file) as c:
        with pytest.raises(UnknownJob, match="no job 'job-nope'"):
            c.status("job-nope")
        with pytest.raises(UsageError, match="spec field method: 'fast' is not one of"):
            c.submit(**small_job(cluster.tmp / "x.gguf", method="fast"))
        with pytest.raises(CoordinatorError) as e:
            c.submit(**small_job(cluster.tmp / "y.gguf", calib="/nonexistent/calib.txt"))
        assert (
            e.value.field == "submit_request.spec" and "/nonexistent/calib.txt" in e.value.message
        )
    r = run_cli(cluster, "--token-file", "/nonexistent/token", "workers")
    assert (
        r.returncode == 1 and "--token-file /nonexistent/token: cannot read" in r.stderr
    ), r.stderr
    r = run_cli(cluster, "--token-file", "", "workers")
    assert r.returncode == 1 and "requires its token" in r.stderr, r.stderr


def run_cli(cluster, *args):
    env = dict(os.environ, KILN_COORDINATOR=cluster.endpoint, KILN_TOKEN_FILE=cluster.token_file)
    return subprocess.run(
        [sys.executable, "-m", "kiln_client.cli", "--timeout", "10", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
