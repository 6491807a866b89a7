"""kiln-client with CURVE: keys made by `kiln keygen`, a coordinator with --curve-secret and
--allow-keys (no token then); an allowed key lists the worker and follows a job to its end,
an unlisted key is refused."""

import subprocess

import pytest

from kiln_client import Client, NoAnswer, UsageError

from conftest import Cluster, kiln_bin, small_job


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curve")
    for name in ("coordinator", "worker", "alice", "mallory"):
        subprocess.run([kiln_bin(), "keygen", str(tmp / name)], check=True, capture_output=True)
    allowed = tmp / "allowed.pub"
    allowed.write_text((tmp / "worker.pub").read_text() + (tmp / "alice.pub").read_text())
    c = Cluster(
        tmp,
        coordinator_args=[
            "--curve-secret",
            str(tmp / "coordinator.secret"),
            "--allow-keys",
            str(allowed),
        ],
        worker_args=[
            "--curve-server-key",
            str(tmp / "coordinator.pub"),
            "--curve-secret",
            str(tmp / "worker.secret"),
        ],
        secured=True,
    )
    try:
        yield c
    finally:
        c.stop()


def test_allowed_key_lists_workers_and_others_are_refused(secured):
    tmp = secured.tmp
    server = str(tmp / "coordinator.pub")
    with Client(
        secured.endpoint, curve_server_key=server, curve_secret=str(tmp / "alice.secret")
    ) as alice:
        secured.wait_workers(alice)
        assert [w.worker_id for w in alice.workers()] == ["w1"]
        # The progress feed is a CURVE server too: watching needs the same keys.
        job = alice.submit(**small_job(tmp / "curve-q4_0.gguf"))
        assert alice.wait(job).state_name == "succeeded", secured.logs()
        assert (tmp / "curve-q4_0.gguf").is_file()
    with Client(
        secured.endpoint, curve_server_key=server, curve_secret=str(tmp / "mallory.secret")
    ) as mallory:
        with pytest.raises(NoAnswer, match="refused this CURVE key .ask its operator to add"):
            mallory.workers()
    with Client(secured.endpoint, timeout=2) as plain:
        with pytest.raises(NoAnswer, match="it requires CURVE"):
            plain.workers()
    with pytest.raises(UsageError, match="the file holds a public key"):
        Client(secured.endpoint, curve_server_key=server, curve_secret=str(tmp / "alice.pub"))
