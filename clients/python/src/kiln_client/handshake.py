"""What a socket's monitor events say about its peer, so "no answer" can tell a refused
CURVE key from nobody listening (as Kiln's HandshakeWatch)."""

import zmq
from zmq.utils.monitor import recv_monitor_message

EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
MECHANISM_MISMATCH = 0x11000002  # ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
CRYPTOGRAPHIC = 0x11000001  # ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC


class HandshakeWatch:
    """Create before the socket connects; `verdict()` reads the events queued so far."""

    def __init__(self, socket):
        self._pair = socket.get_monitor_socket(EVENTS)
        self.connects = self.retries = 0
        self.last = None  # ("succeeded",) / ("refused", status) / ("protocol", code)

    def verdict(self):
        """'unknown', 'succeeded', 'refused', 'protocol', 'no-handshake' or 'unreachable'."""
        while self._pair.poll(0):
            e = recv_monitor_message(self._pair)
            kind = e["event"]
            if kind == zmq.EVENT_CONNECTED:
                self.connects += 1
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                self.retries += 1
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.last = ("succeeded", 0)
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.last = ("refused", e["value"])
            elif kind in (
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            ):
                self.last = ("protocol", e["value"])
        if self.last:
            return self.last[0]
        if self.connects:
            return "no-handshake"
        return "unreachable" if self.retries else "unknown"

    def hint(self, curve):
        """What to check after a failed handshake; None if it did not fail that way."""
        v = self.verdict()
        if v == "protocol":
            code = self.last[1]
            if code == MECHANISM_MISMATCH:
                return (
                    "it does not use CURVE; drop curve_server_key and curve_secret"
                    if curve
                    else "it requires CURVE; pass curve_server_key (its .pub file) and "
                    "curve_secret (this client's .secret file)"
                )
            if code == CRYPTOGRAPHIC:
                return "the CURVE keys do not match; check that curve_server_key is the coordinator's public key"
            return f"protocol error 0x{code:08x}; check that both ends use the same CURVE settings"
        if v == "no-handshake" and curve:
            return (
                "check that curve_server_key is the coordinator's public key "
                "(a CURVE server drops a handshake it cannot decrypt)"
            )
        return None

    def close(self):
        self._pair.close(linger=0)
