/* kiln-c-client: submits a quantization job to a Kiln coordinator, follows its progress
 * feed to the end and exits 0 if it succeeded, 1 if it failed, was cancelled or the
 * coordinator could not be used, 2 on bad arguments. A conformance client of the
 * protocol in Protos/kiln/v1, written without any of Kiln's code. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "conn.h"
#include "follow.h"

typedef struct {
    const char *name;
    int value;
} choice;

static const choice FORMATS[] = {
    {"gguf-q4_0", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q4_0},
    {"gguf-q4_1", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q4_1},
    {"gguf-q8_0", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q8_0},
    {"gguf-q2_k", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q2_K},
    {"gguf-q3_k", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q3_K},
    {"gguf-q4_k", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q4_K},
    {"gguf-q5_k", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q5_K},
    {"gguf-q6_k", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q6_K},
    {"gguf-q4_k_m", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q4_K_M},
    {"gguf-q3_k_m", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q3_K_M},
    {"gptq-safetensors", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GPTQ_SAFETENSORS},
    {"compressed-tensors-w8a8", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_COMPRESSED_TENSORS_W8A8},
    {"compressed-tensors-w4a16", KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_COMPRESSED_TENSORS_W4A16},
    {NULL, 0},
};
static const choice METHODS[] = {
    {"rtn", KILN__V1__QUANT_METHOD__QUANT_METHOD_RTN},
    {"gptq", KILN__V1__QUANT_METHOD__QUANT_METHOD_GPTQ},
    {"awq", KILN__V1__QUANT_METHOD__QUANT_METHOD_AWQ},
    {"awq+gptq", KILN__V1__QUANT_METHOD__QUANT_METHOD_AWQ_GPTQ},
    {NULL, 0},
};
static const choice MODES[] = {
    {"parallel", KILN__V1__SCHEDULE_MODE__SCHEDULE_MODE_PARALLEL},
    {"sequential", KILN__V1__SCHEDULE_MODE__SCHEDULE_MODE_SEQUENTIAL},
    {NULL, 0},
};

static void usage(FILE *to) {
    fprintf(to,
            "usage: kiln-c-client [--coordinator tcp://HOST:PORT] [--publish ENDPOINT] [--token-file FILE]\n"
            "                     [--timeout SECONDS] --model FILE --calib FILE --out FILE\n"
            "                     [--format gguf-q4_0] [--method gptq] [--mode sequential]\n"
            "                     [--samples 128] [--seqlen 512] [--seed 0] [--bits N] [--name LABEL]\n"
            "Defaults: --coordinator $KILN_COORDINATOR or tcp://127.0.0.1:5555, --token-file $KILN_TOKEN_FILE,\n"
            "--publish the coordinator's port + 1, --timeout 5.\n");
}

static int die_usage(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "kiln-c-client: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

static int pick(const choice *table, const char *flag, const char *value, int *out) {
    for (const choice *c = table; c->name; c++) {
        if (strcmp(c->name, value) == 0) {
            *out = c->value;
            return 0;
        }
    }
    fprintf(stderr, "kiln-c-client: %s %s: not one of", flag, value);
    for (const choice *c = table; c->name; c++) fprintf(stderr, " %s", c->name);
    fprintf(stderr, "\n");
    return -1;
}

static int number(const char *flag, const char *value, unsigned long long max, unsigned long long *out) {
    char *end = NULL;
    unsigned long long v = strtoull(value, &end, 10);
    if (!*value || *end || value[0] == '-' || v > max) {
        fprintf(stderr, "kiln-c-client: %s %s: not a whole number in 0...%llu\n", flag, value, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Paths as the coordinator sees them: it does not share our working directory. */
static char *absolute(const char *path) {
    if (path[0] == '/') return strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/%s", cwd, path);
    return out;
}

/* tcp://HOST:PORT -> tcp://HOST:PORT+1 (the coordinator's progress feed by convention). */
static int publish_for(const char *endpoint, char *out, size_t n) {
    const char *colon = strrchr(endpoint, ':');
    if (strncmp(endpoint, "tcp://", 6) != 0 || !colon || colon < endpoint + 7) return -1;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65534) return -1;
    snprintf(out, n, "%.*s:%ld", (int)(colon - endpoint), endpoint, port + 1);
    return 0;
}

int main(int argc, char **argv) {
    const char *coordinator = getenv("KILN_COORDINATOR");
    const char *token_file = getenv("KILN_TOKEN_FILE");
    const char *publish = NULL, *model = NULL, *calib = NULL, *out = NULL, *name = NULL;
    int format = KILN__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_GGUF_Q4_0;
    int method = KILN__V1__QUANT_METHOD__QUANT_METHOD_GPTQ;
    int mode = KILN__V1__SCHEDULE_MODE__SCHEDULE_MODE_SEQUENTIAL;
    unsigned long long samples = 128, seqlen = 512, seed = 0, bits = 0;
    double timeout = 5;
    static const struct option options[] = {
        {"coordinator", required_argument, 0, 'c'}, {"publish", required_argument, 0, 'p'},
        {"token-file", required_argument, 0, 't'},  {"timeout", required_argument, 0, 'T'},
        {"model", required_argument, 0, 'm'},       {"calib", required_argument, 0, 'C'},
        {"out", required_argument, 0, 'o'},         {"format", required_argument, 0, 'f'},
        {"method", required_argument, 0, 'M'},      {"mode", required_argument, 0, 'd'},
        {"samples", required_argument, 0, 's'},     {"seqlen", required_argument, 0, 'l'},
        {"seed", required_argument, 0, 'S'},        {"bits", required_argument, 0, 'b'},
        {"name", required_argument, 0, 'n'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'c': coordinator = optarg; break;
        case 'p': publish = optarg; break;
        case 't': token_file = optarg; break;
        case 'T': {
            char *end = NULL;
            timeout = strtod(optarg, &end);
            if (*end || !(timeout > 0 && timeout < 86400))
                return die_usage("--timeout %s: not a number of seconds in (0, 86400)%s", optarg, "");
            break;
        }
        case 'm': model = optarg; break;
        case 'C': calib = optarg; break;
        case 'o': out = optarg; break;
        case 'n': name = optarg; break;
        case 'f': bad = pick(FORMATS, "--format", optarg, &format); break;
        case 'M': bad = pick(METHODS, "--method", optarg, &method); break;
        case 'd': bad = pick(MODES, "--mode", optarg, &mode); break;
        case 's': bad = number("--samples", optarg, UINT32_MAX, &samples); break;
        case 'l': bad = number("--seqlen", optarg, UINT32_MAX, &seqlen); break;
        case 'S': bad = number("--seed", optarg, UINT64_MAX, &seed); break;
        case 'b': bad = number("--bits", optarg, 8, &bits); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) return die_usage("unexpected argument %s%s", argv[optind], "");
    if (!model || !calib || !out) return die_usage("--model, --calib and --out are required%s%s", "", "");
    if (!coordinator || !*coordinator) coordinator = "tcp://127.0.0.1:5555";
    char feed[512];
    if (!publish) {
        if (publish_for(coordinator, feed, sizeof feed) != 0)
            return die_usage("--coordinator %s: not tcp://HOST:PORT with a port below 65535; pass --publish%s",
                             coordinator, "");
        publish = feed;
    }

    Kiln__V1__CalibrationSpec cal = KILN__V1__CALIBRATION_SPEC__INIT;
    Kiln__V1__JobSpec spec = KILN__V1__JOB_SPEC__INIT;
    char *model_abs = absolute(model), *calib_abs = absolute(calib), *out_abs = absolute(out);
    if (!model_abs || !calib_abs || !out_abs) {
        fprintf(stderr, "kiln-c-client: cannot make the paths absolute (getcwd failed)\n");
        return 1;
    }
    cal.text_path = calib_abs;
    cal.samples = (uint32_t)samples;
    cal.seqlen = (uint32_t)seqlen;
    cal.seed = seed;
    cal.sampler = KILN__V1__SAMPLER__SAMPLER_RANDOM_WINDOWS;
    spec.name = (char *)(name ? name : (strrchr(out_abs, '/') + 1));
    spec.model_path = model_abs;
    spec.output_path = out_abs;
    spec.calibration = &cal;
    spec.method = (Kiln__V1__QuantMethod)method;
    spec.mode = (Kiln__V1__ScheduleMode)mode;
    spec.format = (Kiln__V1__OutputFormat)format;
    spec.bits = (uint32_t)bits;
    spec.act_order = 1; /* `kiln run`'s defaults */
    spec.damp_percent = 0.01f;

    void *ctx = zmq_ctx_new();
    kiln_conn conn;
    char err[KILN_ERR_LEN];
    int status = 1;
    if (kiln_open(&conn, ctx, coordinator, token_file, (int)(timeout * 1000), err) != 0) {
        fprintf(stderr, "kiln-c-client: %s\n", err);
        goto end;
    }
    /* The client token makes a resubmission after a lost reply return the same job. */
    char client_token[48];
    snprintf(client_token, sizeof client_token, "c-%s-%ld", conn.prefix, (long)getpid());
    Kiln__V1__SubmitRequest submit = KILN__V1__SUBMIT_REQUEST__INIT;
    submit.spec = &spec;
    submit.client_token = client_token;
    Kiln__V1__Envelope req = KILN__V1__ENVELOPE__INIT;
    req.body_case = KILN__V1__ENVELOPE__BODY_SUBMIT_REQUEST;
    req.submit_request = &submit;
    Kiln__V1__Envelope *reply = kiln_call(&conn, &req, KILN__V1__ENVELOPE__BODY_SUBMIT_RESPONSE, err);
    if (!reply) {
        fprintf(stderr, "kiln-c-client: %s\n", err);
        goto close;
    }
    char job[256];
    snprintf(job, sizeof job, "%s", reply->submit_response->job_id);
    kiln__v1__envelope__free_unpacked(reply, NULL);
    if (!*job) {
        fprintf(stderr, "kiln-c-client: the coordinator at %s answered a submit with an empty job id\n", coordinator);
        goto close;
    }
    printf("%s\n", job);
    fflush(stdout);

    kiln_job_view view;
    if (kiln_follow(&conn, publish, job, stdout, &view, err) != 0) {
        fprintf(stderr, "kiln-c-client: %s\n", err);
        goto close;
    }
    char state[32];
    kiln_state_name(view.state, state);
    if (view.state == KILN__V1__JOB_STATE__JOB_STATE_SUCCEEDED) {
        printf("job %s succeeded: %s\n", job, out_abs);
        status = 0;
    } else {
        fprintf(stderr, "kiln-c-client: job %s %s: %s\n", job, state, *view.error ? view.error : "no error reported");
    }
close:
    kiln_close(&conn);
end:
    zmq_ctx_term(ctx);
    free(model_abs);
    free(calib_abs);
    free(out_abs);
    return status;
}
