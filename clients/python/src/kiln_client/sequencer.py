"""The Clone pattern's ordering rules, client side, without sockets (as Kiln's CloneSequencer).

Subscribe first, then ask for a snapshot. Updates that arrive before it are buffered; when
it comes, only those with a sequence above the snapshot's are applied, in order, and then
every update newer than the last seen. The coordinator numbers updates globally, one by
one, so a skipped number means the feed lost something (PUB drops on a full queue, or the
subscription was not active yet): `needs_snapshot` then asks for a fresh snapshot.
"""


class CloneSequencer:
    def __init__(self, job_id=None, max_pending=100_000):
        # Only this job's updates are returned; filtered after the gap check (numbers are global).
        self.job_id = job_id
        self.max_pending = max(1, max_pending)
        self.awaiting_snapshot = True
        self.last_sequence = None
        self.needs_snapshot = False
        self._pending = []

    def receive(self, update):
        """An update from the feed; returns the updates to apply now, in order."""
        if self.awaiting_snapshot:
            if len(self._pending) >= self.max_pending:
                self._pending.pop(0)  # the gap shows, and the next snapshot covers it
            self._pending.append(update)
            return []
        return self._accept(update)

    def snapshot_requested(self):
        self.awaiting_snapshot = True
        self.needs_snapshot = False

    def snapshot_received(self, sequence):
        """A snapshot up to `sequence` arrived (apply it first); returns the newer buffered updates."""
        self.awaiting_snapshot = False
        self.needs_snapshot = False
        # The snapshot is the truth, even below what we saw (a restarted coordinator counts from 0).
        self.last_sequence = sequence
        buffered = sorted(self._pending, key=lambda u: u.sequence)
        self._pending = []
        out = []
        for u in buffered:
            out += self._accept(u)
        return out

    def _accept(self, update):
        last = self.last_sequence or 0
        if update.sequence <= last:
            return []  # already reflected, or a duplicate
        if update.sequence != last + 1:
            self.needs_snapshot = True
        self.last_sequence = update.sequence
        if self.job_id is not None and update.job_id != self.job_id:
            return []
        return [update]
