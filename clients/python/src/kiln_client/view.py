"""What a watcher knows about one job: a snapshot's JobStatus kept current by ProgressUpdates."""

from .proto import job_pb2

TERMINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
# A peer's block index never sizes our allocations beyond this.
MAX_BLOCKS = 4096


def state_name(state):
    """'succeeded' for JOB_STATE_SUCCEEDED (as `kiln status` prints it)."""
    try:
        return job_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()
    except ValueError:
        return f"state {state}"


class JobView:
    def __init__(self, job_id):
        self.job_id = job_id
        self.state = job_pb2.JOB_STATE_UNSPECIFIED
        self.status = job_pb2.JobStatus(job_id=job_id)
        self.blocks_total = 0
        self._modules = {}

    @property
    def state_name(self):
        return state_name(self.state)

    @property
    def finished(self):
        return self.state in TERMINAL

    @property
    def error(self):
        """The job's kiln.v1.Error, or None."""
        return self.status.error if self.status.HasField("error") else None

    def apply_status(self, status):
        """Replaces everything with a full status (a snapshot, or an update carrying one)."""
        self.status = job_pb2.JobStatus()
        self.status.CopyFrom(status)
        self.state = status.state
        self.blocks_total = min(status.blocks_total, MAX_BLOCKS)
        self._modules = {}
        for m in status.modules:
            self._store(m)

    def apply_update(self, update):
        if update.job_id and update.job_id != self.job_id:
            return
        if update.HasField("status"):
            self.apply_status(update.status)
        if update.state != job_pb2.JOB_STATE_UNSPECIFIED:
            self.state = update.state
            self.status.state = update.state
        if update.HasField("module"):
            self._store(update.module)

    def _store(self, m):
        if m.block < MAX_BLOCKS:
            self._modules[(m.block, m.module, m.phase)] = m

    def block_fractions(self):
        """Share of each block's work done, 0...1: the mean over its known phases (the
        reconstruction always counts), 1 once the reconstruction and all else completed."""
        count = max([self.blocks_total] + [b + 1 for b, _, _ in self._modules])
        phases = [{} for _ in range(count)]
        for (block, _, phase), m in self._modules.items():
            done, total = phases[block].get(phase, (0, 0))
            phases[block][phase] = (done + m.done, total + m.total)
        out = []
        for p in phases:
            if self.state == job_pb2.JOB_STATE_SUCCEEDED:
                out.append(1.0)
                continue
            rec = p.pop(job_pb2.PHASE_RECONSTRUCT, (0, 0))
            known = [(d, t) for d, t in p.values() if t > 0] + [rec]
            if all(t > 0 and d >= t for d, t in known):
                out.append(1.0)
            else:
                out.append(sum(min(1.0, d / t) if t else 0.0 for d, t in known) / len(known))
        return out

    @property
    def blocks_done(self):
        return sum(1 for f in self.block_fractions() if f >= 1.0)
