"""A kiln.v1.JobSpec from the options of `kiln run` (same names, with underscores).

Only the portable proto fields are filled in; the coordinator applies `kiln run`'s defaults
to what is left at zero. `spec_json` (Kiln's own JobSpec as JSON) reaches every option;
when given, the coordinator uses it and ignores the other fields.
"""

import json
import os

from .errors import UsageError
from .proto import job_pb2

METHODS = {
    "rtn": job_pb2.QUANT_METHOD_RTN,
    "gptq": job_pb2.QUANT_METHOD_GPTQ,
    "awq": job_pb2.QUANT_METHOD_AWQ,
    "awq+gptq": job_pb2.QUANT_METHOD_AWQ_GPTQ,
}
FORMATS = {
    "gguf-q4_0": job_pb2.OUTPUT_FORMAT_GGUF_Q4_0,
    "gguf-q4_1": job_pb2.OUTPUT_FORMAT_GGUF_Q4_1,
    "gguf-q8_0": job_pb2.OUTPUT_FORMAT_GGUF_Q8_0,
    "gguf-q2_k": job_pb2.OUTPUT_FORMAT_GGUF_Q2_K,
    "gguf-q3_k": job_pb2.OUTPUT_FORMAT_GGUF_Q3_K,
    "gguf-q4_k": job_pb2.OUTPUT_FORMAT_GGUF_Q4_K,
    "gguf-q5_k": job_pb2.OUTPUT_FORMAT_GGUF_Q5_K,
    "gguf-q6_k": job_pb2.OUTPUT_FORMAT_GGUF_Q6_K,
    "gguf-q4_k_m": job_pb2.OUTPUT_FORMAT_GGUF_Q4_K_M,
    "gguf-q3_k_m": job_pb2.OUTPUT_FORMAT_GGUF_Q3_K_M,
    "gptq-safetensors": job_pb2.OUTPUT_FORMAT_GPTQ_SAFETENSORS,
    "compressed-tensors-w8a8": job_pb2.OUTPUT_FORMAT_COMPRESSED_TENSORS_W8A8,
    "compressed-tensors-w4a16": job_pb2.OUTPUT_FORMAT_COMPRESSED_TENSORS_W4A16,
}
MODES = {
    "parallel": job_pb2.SCHEDULE_MODE_PARALLEL,
    "sequential": job_pb2.SCHEDULE_MODE_SEQUENTIAL,
}
SAMPLERS = {"consecutive": job_pb2.SAMPLER_CONTIGUOUS, "random": job_pb2.SAMPLER_RANDOM_WINDOWS}

FIELDS = (
    "model calib out name samples seqlen seed sampler method bits group sym act_order mode "
    "format damp error_report spec_json"
).split()


def _choice(field, value, table):
    try:
        return table[value]
    except KeyError:
        raise UsageError(
            f"spec field {field}: {value!r} is not one of {', '.join(table)}"
        ) from None


def _count(field, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"spec field {field}: {value!r} is not a whole number in {low}...{high}")
    return value


def job_spec(spec=None, **fields):
    """kiln.v1.JobSpec from a dict and/or keyword fields (see FIELDS); paths made absolute,
    since the coordinator does not share our working directory."""
    given = dict(spec or {}, **fields)
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise UsageError(f"spec field {unknown[0]}: not an option (known: {', '.join(FIELDS)})")
    for need in ("model", "calib", "out"):
        if not given.get(need):
            raise UsageError(f"spec field {need}: missing (a path the coordinator can read)")
    p = job_pb2.JobSpec()
    p.model_path = os.path.abspath(given["model"])
    p.calibration.text_path = os.path.abspath(given["calib"])
    p.output_path = os.path.abspath(given["out"])
    p.name = given.get("name") or os.path.basename(p.output_path)
    p.calibration.samples = _count("samples", given.get("samples", 128), 1, 1 << 31)
    p.calibration.seqlen = _count("seqlen", given.get("seqlen", 512), 1, 1 << 31)
    p.calibration.seed = _count("seed", given.get("seed", 0), 0, (1 << 64) - 1)
    p.calibration.sampler = _choice("sampler", given.get("sampler", "random"), SAMPLERS)
    p.method = _choice("method", given.get("method", "gptq"), METHODS)
    p.format = _choice("format", given.get("format", "gguf-q4_0"), FORMATS)
    p.mode = _choice("mode", given.get("mode", "sequential"), MODES)
    if given.get("bits") is not None:
        p.bits = _count("bits", given["bits"], 2, 8)
    if given.get("group") is not None:
        group = _count("group", given["group"], -1, 1 << 20)
        p.group_size = 0 if group == -1 else group
    if given.get("sym") is not None:
        p.symmetric = bool(given["sym"])
    p.act_order = bool(given.get("act_order", True))
    damp = given.get("damp", 0.01)
    if not isinstance(damp, (int, float)) or not 0 < damp < 1:
        raise UsageError(f"spec field damp: {damp!r} is not a fraction in (0, 1)")
    p.damp_percent = damp
    if given.get("error_report") is not None:
        p.error_report = bool(given["error_report"])
    raw = given.get("spec_json")
    if raw is not None:
        p.spec_json = raw if isinstance(raw, str) else json.dumps(raw)
    return p
