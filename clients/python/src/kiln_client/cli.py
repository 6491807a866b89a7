"""kiln-client: submit | watch | status | cancel | workers, as the `kiln` commands of the same names."""

import argparse
import json
import os
import sys

from google.protobuf import json_format

from .client import Client
from .errors import KilnError
from .keys import read_token
from .proto import client_pb2
from .spec import FORMATS, METHODS, MODES, SAMPLERS
from .view import state_name


def _connection(suppress=False):
    """The connection options. A command's copy (`suppress`) has no defaults, so that it
    does not overwrite the values given before the command."""
    env = os.environ.get
    defaults = {
        "coordinator": env("KILN_COORDINATOR") or "tcp://127.0.0.1:5555",
        "token_file": env("KILN_TOKEN_FILE") or None,
        "curve_server_key": env("KILN_CURVE_SERVER_KEY") or None,
        "curve_secret": env("KILN_CURVE_SECRET") or None,
        "timeout": 5.0,
        "publish": None,
    }
    if suppress:
        defaults = dict.fromkeys(defaults, argparse.SUPPRESS)
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument(
        "--coordinator",
        default=defaults["coordinator"],
        help="coordinator endpoint (default: $KILN_COORDINATOR, else tcp://127.0.0.1:5555)",
    )
    g.add_argument(
        "--token-file",
        default=defaults["token_file"],
        help="the coordinator's DATA_DIR/token (default: $KILN_TOKEN_FILE); "
        "a coordinator without CURVE keys requires it",
    )
    g.add_argument(
        "--curve-server-key",
        default=defaults["curve_server_key"],
        help="file holding the coordinator's CURVE public key (default: $KILN_CURVE_SERVER_KEY)",
    )
    g.add_argument(
        "--curve-secret",
        default=defaults["curve_secret"],
        help="file holding this client's CURVE secret key (default: $KILN_CURVE_SECRET)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=defaults["timeout"],
        help="seconds to wait for each answer",
    )
    g.add_argument(
        "--publish",
        default=defaults["publish"],
        help="progress feed endpoint (default: the coordinator's port + 1)",
    )
    return p


def _parser():
    parser = argparse.ArgumentParser(
        prog="kiln-client", description=__doc__, parents=[_connection()]
    )
    common = _connection(suppress=True)
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", parents=[common], help="submit a job and print its id")
    s.add_argument("--model", required=True)
    s.add_argument("--calib", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--name")
    s.add_argument("--samples", type=int, default=128)
    s.add_argument("--seqlen", type=int, default=512)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", choices=SAMPLERS, default="random")
    s.add_argument("--method", choices=METHODS, default="gptq")
    s.add_argument("--bits", type=int)
    s.add_argument("--group", type=int)
    s.add_argument("--sym", action=argparse.BooleanOptionalAction)
    s.add_argument("--act-order", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--mode", choices=MODES, default="sequential")
    s.add_argument("--format", choices=FORMATS, default="gguf-q4_0")
    s.add_argument("--damp", type=float, default=0.01)
    s.add_argument("--error-report", action=argparse.BooleanOptionalAction)
    s.add_argument(
        "--spec-json",
        metavar="FILE",
        help="Kiln's own JobSpec as JSON (overrides the fields above)",
    )
    s.add_argument("--wait", action="store_true", help="follow the job to its end like watch")
    _display_flags(s)

    w = sub.add_parser(
        "watch", parents=[common], help="follow a job to its end (exit 1 unless it succeeded)"
    )
    w.add_argument("job")
    _display_flags(w)

    st = sub.add_parser("status", parents=[common], help="print a job's status")
    st.add_argument("job")
    st.add_argument("--json", action="store_true")

    c = sub.add_parser("cancel", parents=[common], help="cancel a job")
    c.add_argument("job")
    c.add_argument("--reason", default="")

    wk = sub.add_parser("workers", parents=[common], help="list the connected workers")
    wk.add_argument("--json", action="store_true")
    return parser


def _display_flags(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--bars", action="store_true", help="a progress bar per block even when not on a terminal"
    )
    g.add_argument("--plain", action="store_true", help="one line per change even on a terminal")


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.token_file:
            read_token(args.token_file, what="--token-file")  # errors name the flag
        with Client(
            args.coordinator,
            token_file=args.token_file,
            curve_server_key=args.curve_server_key,
            curve_secret=args.curve_secret,
            timeout=args.timeout,
            publish=args.publish,
        ) as client:
            return COMMANDS[args.command](client, args)
    except KilnError as e:
        print(f"kiln-client: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _submit(client, args):
    fields = {
        k: getattr(args, k)
        for k in (
            "model calib out name samples seqlen seed sampler method bits group sym act_order mode format damp "
            "error_report"
        ).split()
    }
    if args.spec_json:
        try:
            with open(args.spec_json, encoding="utf-8") as f:
                fields["spec_json"] = f.read()
        except OSError as e:
            raise KilnError(
                f"--spec-json {args.spec_json}: cannot read the file ({e.strerror})"
            ) from None
    job = client.submit(**fields)
    print(job, flush=True)
    return _follow(client, job, args) if args.wait else 0


def _watch(client, args):
    return _follow(client, args.job, args)


def _follow(client, job, args):
    bars = args.bars or (not args.plain and sys.stderr.isatty())
    show = _Bars() if bars else _Lines(job)
    try:
        for view in client.watch(job):
            show.update(view)
    finally:
        show.close()
    if view.state_name == "succeeded":
        print(f"job {job} succeeded: {view.status.spec.output_path}")
        return 0
    if view.state_name == "cancelled":
        print(f"kiln-client: job {job} was cancelled", file=sys.stderr)
        return 1
    why = view.error.message if view.error else "no error reported"
    print(f"kiln-client: job {job} failed: {why}", file=sys.stderr)
    return 1


class _Lines:
    """One line per job state change and per block that finishes (logs, pipes, CI)."""

    def __init__(self, job):
        self.job = job
        self.state = None
        self.done = set()

    def update(self, view):
        if view.state_name != self.state:
            self.state = view.state_name
            print(
                f"job {self.job}: {self.state} ({view.blocks_done}/{view.blocks_total} blocks)",
                flush=True,
            )
        for b, f in enumerate(view.block_fractions()):
            if f >= 1 and b not in self.done:
                self.done.add(b)
                print(f"block {b}: done ({len(self.done)}/{view.blocks_total})", flush=True)

    def close(self):
        pass


class _Bars:
    """A tqdm bar per block (percent of its work), under a line with the job's state."""

    def __init__(self):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.head = None
        self.bars = []

    def update(self, view):
        if self.head is None:
            self.head = self.tqdm(
                total=view.blocks_total or 1,
                desc="job",
                unit="block",
                position=0,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        fractions = view.block_fractions()
        while len(self.bars) < len(fractions):
            b = len(self.bars)
            self.bars.append(
                self.tqdm(
                    total=100,
                    desc=f"block {b}",
                    unit="%",
                    position=b + 1,
                    leave=True,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}",
                )
            )
        for bar, f in zip(self.bars, fractions):
            n = round(f * 100)
            if n != bar.n:
                bar.update(n - bar.n)
        self.head.set_description(f"job {view.state_name}")
        self.head.total = max(view.blocks_total, 1)
        self.head.update(view.blocks_done - self.head.n)

    def close(self):
        for bar in self.bars + ([self.head] if self.head else []):
            bar.close()


def _status(client, args):
    s = client.status(args.job)
    if args.json:
        print(json_format.MessageToJson(s, preserving_proto_field_name=True))
        return 0
    print(
        f"{s.job_id}: {state_name(s.state)}, {s.blocks_done}/{s.blocks_total} blocks, output {s.spec.output_path}"
    )
    if s.HasField("error"):
        print(f"error: {s.error.message}")
    return 0


def _cancel(client, args):
    print(f"{args.job}: {state_name(client.cancel(args.job, args.reason))}")
    return 0


def _workers(client, args):
    workers = client.workers()
    if args.json:
        print(
            json.dumps(
                [json_format.MessageToDict(w, preserving_proto_field_name=True) for w in workers],
                indent=2,
            )
        )
        return 0
    for w in workers:
        state = client_pb2.WorkerState.Name(w.state).removeprefix("WORKER_STATE_").lower()
        print(f"{w.worker_id}\t{state}\t{w.hostname}\t{w.tasks_done} tasks done")
    if not workers:
        print("no workers connected")
    return 0


COMMANDS = {
    "submit": _submit,
    "watch": _watch,
    "status": _status,
    "cancel": _cancel,
    "workers": _workers,
}

if __name__ == "__main__":
    sys.exit(main())
