"""The Clone pattern's ordering rules and the job view, without a network."""

from kiln_client import CloneSequencer, JobView
from kiln_client.proto import client_pb2, job_pb2


def update(seq, job="a", **kw):
    return client_pb2.ProgressUpdate(sequence=seq, job_id=job, **kw)


def test_buffers_until_snapshot_then_applies_only_newer():
    s = CloneSequencer("a")
    assert s.receive(update(5)) == [] and s.receive(update(6)) == []
    out = s.snapshot_received(5)
    assert [u.sequence for u in out] == [6]
    assert not s.needs_snapshot


def test_gap_asks_for_a_snapshot_and_other_jobs_are_filtered_after_the_check():
    s = CloneSequencer("a")
    s.snapshot_received(1)
    assert s.receive(update(2, job="b")) == []
    assert [u.sequence for u in s.receive(update(3))] == [3]
    assert not s.needs_snapshot
    s.receive(update(7))
    assert s.needs_snapshot
    assert s.receive(update(7)) == []  # duplicate


def test_view_follows_updates_and_counts_finished_blocks():
    v = JobView("a")
    v.apply_status(job_pb2.JobStatus(job_id="a", state=job_pb2.JOB_STATE_RUNNING, blocks_total=2))
    assert v.block_fractions() == [0.0, 0.0]
    m = job_pb2.ModuleProgress(block=1, phase=job_pb2.PHASE_RECONSTRUCT, done=2, total=2)
    v.apply_update(update(1, module=m))
    assert v.blocks_done == 1 and not v.finished
    v.apply_update(update(2, state=job_pb2.JOB_STATE_SUCCEEDED))
    assert v.finished and v.blocks_done == 2 and v.state_name == "succeeded"
