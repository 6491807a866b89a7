"""Requests to a Kiln coordinator over one DEALER socket connected to its ROUTER, and the
progress feed (its PUB socket, listen port + 1) followed with the Clone pattern.

Every request carries a fresh correlation id and only the reply with that id is accepted,
so a late reply to an earlier request that timed out is dropped. Frame 0 of every message
is a kiln.v1.Envelope; client requests and replies carry no tensor frames. One thread uses
a Client at a time (it owns ZeroMQ sockets).
"""

import os
import time
import uuid

import zmq
from google.protobuf.message import DecodeError

from . import keys, spec as specs
from .errors import CoordinatorError, MalformedReply, NoAnswer, UnknownJob, UsageError
from .handshake import HandshakeWatch
from .proto import client_pb2, common_pb2, envelope_pb2
from .sequencer import CloneSequencer
from .view import JobView

# Replies larger than this are refused by libzmq before they reach us.
MAX_REPLY_BYTES = 64 << 20


def publish_endpoint(endpoint):
    """The coordinator's progress feed by its convention: same host, listen port + 1."""
    if not endpoint.startswith("tcp://"):
        raise UsageError(f'endpoint "{endpoint}": not a tcp://HOST:PORT endpoint; pass publish=')
    host, sep, port = endpoint[len("tcp://") :].rpartition(":")
    if not sep or not host:
        raise UsageError(f'endpoint "{endpoint}": missing :PORT')
    if not port.isdigit() or not 1 <= int(port) <= 65534:
        raise UsageError(
            f'endpoint "{endpoint}": the port must be a number in 1...65534 (progress is on port + 1)'
        )
    return f"tcp://{host}:{int(port) + 1}"


def _key(value, what, secret):
    """A Z85 key given as a key file (from `kiln keygen`) or as the key itself."""
    if os.path.exists(value) or keys.key_problem(value):
        return keys.read_key(value, what, secret)
    return value


class Client:
    def __init__(
        self,
        endpoint,
        token_file=None,
        curve_server_key=None,
        curve_secret=None,
        timeout=5.0,
        publish=None,
    ):
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise UsageError(f"timeout {timeout!r}: must be a positive number of seconds")
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.publish = publish
        self.token = keys.read_token(token_file) if token_file else None
        self.curve = None
        self.ephemeral = False
        if curve_secret and not curve_server_key:
            raise UsageError("curve_secret needs curve_server_key (the coordinator's public key)")
        if curve_server_key:
            if not zmq.has("curve"):
                raise UsageError("this pyzmq's libzmq has no CURVE support")
            server = _key(curve_server_key, "curve_server_key", secret=False)
            self.ephemeral = not curve_secret
            if curve_secret:
                secret = _key(curve_secret, "curve_secret", secret=True)
                public = zmq.curve_public(secret.encode()).decode()
            else:
                public, secret = (k.decode() for k in zmq.curve_keypair())
            self.curve = (server, public, secret)
        self._context = zmq.Context.instance()
        self._prefix = uuid.uuid4().hex[:8]
        self._next_id = 0
        self._socket = self._open(zmq.DEALER)
        self._socket.setsockopt(zmq.SNDTIMEO, int(self.timeout * 1000))
        self._watch = HandshakeWatch(self._socket)
        try:
            self._socket.connect(endpoint)
        except (zmq.ZMQError, TypeError) as e:
            self.close()
            raise UsageError(f'endpoint "{endpoint}": {e} (expected tcp://HOST:PORT)') from None

    def _open(self, kind):
        s = self._context.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        if self.curve:
            server, public, secret = self.curve
            s.curve_serverkey = server.encode()
            s.curve_publickey = public.encode()
            s.curve_secretkey = secret.encode()
        return s

    def close(self):
        if getattr(self, "_watch", None):
            self._socket.disable_monitor()
            self._watch.close()
            self._watch = None
        if getattr(self, "_socket", None):
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # requests

    def submit(self, spec=None, client_token=None, **fields):
        """Submits a job (a dict and/or keyword fields, see kiln_client.spec); returns its id."""
        req = client_pb2.SubmitRequest(client_token=client_token or str(uuid.uuid4()))
        req.spec.CopyFrom(
            spec if isinstance(spec, specs.job_pb2.JobSpec) else specs.job_spec(spec, **fields)
        )
        reply = self._call("submit_request", req, "submit_response")
        if not reply.job_id:
            raise MalformedReply(
                f"coordinator at {self.endpoint} answered a submit with an empty job id"
            )
        return reply.job_id

    def status(self, job_id):
        """The job's kiln.v1.JobStatus."""
        return self._call(
            "status_request", client_pb2.StatusRequest(job_id=job_id), "status_response", job_id
        ).status

    def cancel(self, job_id, reason=""):
        """Cancels a job; returns its state afterwards (a kiln.v1.JobState value)."""
        req = client_pb2.CancelRequest(job_id=job_id, reason=reason)
        return self._call("cancel_request", req, "cancel_response", job_id).state

    def workers(self):
        """The connected workers (kiln.v1.WorkerInfo)."""
        return list(
            self._call(
                "list_workers_request", client_pb2.ListWorkersRequest(), "list_workers_response"
            ).workers
        )

    def snapshot(self, job_id=""):
        """Every job's status (or one job's), with the sequence of the last update it reflects."""
        req = client_pb2.SnapshotRequest(job_id=job_id)
        return self._call("snapshot_request", req, "snapshot_response", job_id or None)

    def report(self, job_id):
        """The JSON report the coordinator kept of a job (sensitivity jobs only)."""
        return self._call(
            "report_request", client_pb2.ReportRequest(job_id=job_id), "report_response", job_id
        ).report_json

    def watch(self, job_id, idle_resync=5.0, tick=0.5):
        """Follows a job to its end: yields its JobView (one object, updated in place) after
        the snapshot and after each change, and every `tick` seconds; returns when the job
        has finished. Subscribes first, then asks for a snapshot (the Clone pattern); a gap
        in the feed's sequence numbers, or `idle_resync` seconds without traffic, fetch a
        fresh snapshot."""
        feed = self.publish or publish_endpoint(self.endpoint)
        sub = self._open(zmq.SUB)
        try:
            sub.setsockopt(zmq.RCVHWM, 100_000)
            sub.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: the global sequence shows losses
            try:
                sub.connect(feed)
            except zmq.ZMQError as e:
                raise UsageError(f'progress endpoint "{feed}": {e}') from None
            yield from self._follow(sub, job_id, idle_resync, tick)
        finally:
            sub.close(linger=0)

    def wait(self, job_id, **kwargs):
        """Follows a job to its end; returns the final JobView."""
        view = None
        for view in self.watch(job_id, **kwargs):
            pass
        return view

    # plumbing

    def _follow(self, sub, job_id, idle_resync, tick):
        sequencer = CloneSequencer(job_id)
        view = JobView(job_id)
        pending = None  # (correlation id, deadline) of the snapshot asked for
        last_activity = time.monotonic()
        seen_snapshot = False
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(self._socket, zmq.POLLIN)
        while True:
            now = time.monotonic()
            if pending is None and (
                not seen_snapshot or sequencer.needs_snapshot or now - last_activity >= idle_resync
            ):
                sequencer.snapshot_requested()
                pending = (
                    self._send("snapshot_request", client_pb2.SnapshotRequest(job_id=job_id)),
                    now + self.timeout,
                )
            if pending and now >= pending[1]:
                raise self._no_answer()
            wait = tick if pending is None else max(0.0, min(tick, pending[1] - now))
            poller.poll(int(wait * 1000))
            while True:
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                last_activity = time.monotonic()
                update = self._decode_update(frames)
                for u in sequencer.receive(update) if update else []:
                    view.apply_update(u)
            while True:
                message = self._receive(0)
                if message is None:
                    break
                if pending is None or message.correlation_id != pending[0]:
                    continue
                snap = self._unpack(message, "snapshot_response", job_id)
                status = next((j for j in snap.jobs if j.job_id == job_id), None)
                if status is None:
                    raise UnknownJob(self.endpoint, job_id)
                pending = None
                seen_snapshot = True
                last_activity = time.monotonic()
                view.apply_status(status)
                for u in sequencer.snapshot_received(snap.sequence):
                    view.apply_update(u)
            if seen_snapshot:
                yield view
                if view.finished:
                    return

    def _decode_update(self, frames):
        """[topic][envelope] -> the ProgressUpdate, or None (a bad feed message is dropped)."""
        if len(frames) != 2:
            return None
        try:
            env = envelope_pb2.Envelope.FromString(frames[1])
        except DecodeError:
            return None
        if (
            env.protocol_version != common_pb2.PROTOCOL_VERSION_1
            or env.WhichOneof("body") != "progress_update"
        ):
            return None
        return env.progress_update

    def _call(self, field, request, expecting, job_id=None):
        cid = self._send(field, request)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._no_answer()
            # In slices, so a refused key ends the wait at once instead of at the deadline.
            message = self._receive(min(left, 0.1))
            if message is None:
                if self._watch.verdict() == "refused":
                    raise self._no_answer()
                continue
            if message.correlation_id == cid:
                return self._unpack(message, expecting, job_id)

    def _send(self, field, request):
        self._next_id += 1
        cid = f"{self._prefix}-{self._next_id}"
        env = envelope_pb2.Envelope(
            protocol_version=common_pb2.PROTOCOL_VERSION_1, correlation_id=cid
        )
        if self.token:
            env.auth_token = self.token
        getattr(env, field).CopyFrom(request)
        try:
            self._socket.send(env.SerializeToString())
        except zmq.Again:
            raise self._no_answer() from None
        return cid

    def _receive(self, timeout):
        """One validated reply envelope if one arrives within `timeout` seconds."""
        if not self._socket.poll(int(timeout * 1000)):
            return None
        frames = self._socket.recv_multipart()
        if len(frames) > 1 and not frames[0]:
            frames = frames[1:]  # a REQ-style empty delimiter
        try:
            env = envelope_pb2.Envelope.FromString(frames[0])
        except DecodeError as e:
            raise MalformedReply(
                f"malformed reply from {self.endpoint}: frame 0 is not an Envelope ({e})"
            ) from None
        if env.protocol_version != common_pb2.PROTOCOL_VERSION_1:
            raise MalformedReply(
                f"malformed reply from {self.endpoint}: protocol_version {env.protocol_version}, "
                f"this client speaks {common_pb2.PROTOCOL_VERSION_1}"
            )
        if len(env.tensors) != len(frames) - 1:
            raise MalformedReply(
                f"malformed reply from {self.endpoint}: {len(env.tensors)} tensor headers for {len(frames) - 1} frames"
            )
        return env

    def _unpack(self, env, expecting, job_id):
        kind = env.WhichOneof("body")
        if kind == "error":
            e = env.error
            if e.code == common_pb2.ERROR_CODE_UNKNOWN_JOB and job_id:
                raise UnknownJob(self.endpoint, job_id, e.field)
            message = e.message
            if e.code == common_pb2.ERROR_CODE_UNAUTHORIZED and not self.token:
                message += " [kiln-client: pass token_file= / --token-file]"
            raise CoordinatorError(
                self.endpoint, common_pb2.ErrorCode.Name(e.code), message, e.field
            )
        if kind != expecting:
            raise MalformedReply(
                f"coordinator at {self.endpoint} answered {kind} to a request expecting {expecting}"
            )
        return getattr(env, kind)

    def _no_answer(self):
        """Why nothing came back: a refused key, nobody listening, a failed handshake, or
        (handshake done) a coordinator that is slow or stuck."""
        hint = self._watch.hint(curve=self.curve is not None)
        if hint:
            return NoAnswer(
                f"the coordinator at {self.endpoint} did not complete the connection handshake: {hint}"
            )
        verdict = self._watch.verdict()
        if verdict == "refused":
            if self.ephemeral:
                return NoAnswer(
                    f"the coordinator at {self.endpoint} refused this CURVE key (a fresh one, made because no "
                    "curve_secret was given): make a key pair with `kiln keygen NAME`, pass NAME.secret, and ask "
                    "the coordinator's operator to add NAME.pub to --allow-keys"
                )
            return NoAnswer(
                f"the coordinator at {self.endpoint} refused this CURVE key "
                f"(ask its operator to add {self.curve[1]} to --allow-keys)"
            )
        if verdict == "unreachable":
            return NoAnswer(
                f"no coordinator answers at {self.endpoint} (is `kiln coordinator` running there?)"
            )
        return NoAnswer(
            f"no answer from {self.endpoint} within {self.timeout:g} s: is `kiln coordinator` running there?"
        )
