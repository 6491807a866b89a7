"""Client of a Kiln coordinator: submit quantization jobs, follow them, cancel them."""

from .client import Client, publish_endpoint
from .errors import CoordinatorError, KilnError, MalformedReply, NoAnswer, UnknownJob, UsageError
from .sequencer import CloneSequencer
from .spec import job_spec
from .view import JobView, state_name

__all__ = [
    "Client",
    "CloneSequencer",
    "CoordinatorError",
    "JobView",
    "KilnError",
    "MalformedReply",
    "NoAnswer",
    "UnknownJob",
    "UsageError",
    "job_spec",
    "publish_endpoint",
    "state_name",
]
