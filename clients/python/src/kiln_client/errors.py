"""Errors of the Kiln client. Each names the endpoint, file or field concerned."""


class KilnError(Exception):
    """Base class: anything the client cannot do, with what to do next."""


class UsageError(KilnError):
    """Bad input from the caller: an endpoint, a key or token file, a spec field."""


class NoAnswer(KilnError):
    """Nothing usable came back from the coordinator in time."""


class MalformedReply(KilnError):
    """A reply failed validation (wrong protocol version, undecodable, unexpected kind)."""


class CoordinatorError(KilnError):
    """The coordinator answered with a kiln.v1.Error."""

    def __init__(self, endpoint, code, message, field=""):
        self.endpoint = endpoint
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"coordinator at {endpoint}: {message or code}{where}")


class UnknownJob(CoordinatorError):
    """The coordinator does not know the job."""

    def __init__(self, endpoint, job_id, field=""):
        super().__init__(endpoint, "ERROR_CODE_UNKNOWN_JOB", f"no job '{job_id}'", field)
        self.job_id = job_id
