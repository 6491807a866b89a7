#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* Replies larger than this are refused by libzmq before they reach us. */
#define MAX_REPLY_BYTES (64 << 20)

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int kiln_read_token(const char *path, char out[65], char *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, KILN_ERR_LEN,
                 "--token-file %s: cannot read the token (%s); it is the coordinator's DATA_DIR/token, "
                 "readable by the user who runs the coordinator",
                 path, strerror(errno));
        return -1;
    }
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    size_t start = 0, end = n;
    while (start < end && strchr(" \t\r\n", buf[start])) start++;
    while (end > start && strchr(" \t\r\n", buf[end - 1])) end--;
    int ok = end - start == 64;
    for (size_t i = start; ok && i < end; i++)
        ok = (buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f');
    if (!ok) {
        snprintf(err, KILN_ERR_LEN,
                 "--token-file %s: not a coordinator token (64 hex digits); pass the coordinator's DATA_DIR/token",
                 path);
        return -1;
    }
    memcpy(out, buf + start, 64);
    out[64] = 0;
    return 0;
}

/* A random hex prefix so ids never collide between clients of one coordinator. */
static void random_prefix(char out[17]) {
    uint64_t r = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32);
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof r) != (ssize_t)sizeof r) r ^= (uint64_t)time(NULL);
        close(fd);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)r);
}

int kiln_open(kiln_conn *c, void *ctx, const char *endpoint, const char *token_file, int timeout_ms, char *err) {
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    c->endpoint = endpoint;
    c->timeout_ms = timeout_ms;
    random_prefix(c->prefix);
    if (token_file && *token_file && kiln_read_token(token_file, c->token, err) != 0) return -1;
    c->dealer = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    int64_t max = MAX_REPLY_BYTES;
    zmq_setsockopt(c->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->dealer, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt(c->dealer, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    char monitor[64];
    snprintf(monitor, sizeof monitor, "inproc://kiln-c-monitor-%s", c->prefix);
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (zmq_socket_monitor(c->dealer, monitor, events) == 0) {
        c->monitor = zmq_socket(ctx, ZMQ_PAIR);
        zmq_setsockopt(c->monitor, ZMQ_LINGER, &linger, sizeof linger);
        zmq_connect(c->monitor, monitor);
    }
    if (zmq_connect(c->dealer, endpoint) != 0) {
        snprintf(err, KILN_ERR_LEN, "endpoint \"%s\": %s (expected tcp://HOST:PORT)", endpoint,
                 zmq_strerror(zmq_errno()));
        kiln_close(c);
        return -1;
    }
    return 0;
}

void kiln_close(kiln_conn *c) {
    if (c->monitor) {
        zmq_socket_monitor(c->dealer, NULL, 0);
        zmq_close(c->monitor);
        c->monitor = NULL;
    }
    if (c->dealer) zmq_close(c->dealer);
    c->dealer = NULL;
}

/* Folds the queued monitor events into the counters (never waits). */
static void read_events(kiln_conn *c) {
    if (!c->monitor) return;
    for (;;) {
        zmq_msg_t head;
        zmq_msg_init(&head);
        if (zmq_msg_recv(&head, c->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&head);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&head) >= 2) memcpy(&event, zmq_msg_data(&head), 2);
        int more = zmq_msg_more(&head);
        zmq_msg_close(&head);
        while (more) { /* the endpoint frame */
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, c->monitor, 0) < 0) more = 0; else more = zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        switch (event) {
        case ZMQ_EVENT_CONNECTED: c->connects++; break;
        case ZMQ_EVENT_CONNECT_RETRIED: c->retries++; break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: c->handshakes++; break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: c->auth_failures++; break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: c->protocol_failures++; break;
        default: break;
        }
    }
}

void kiln_no_answer(kiln_conn *c, char *err) {
    read_events(c);
    if (c->protocol_failures && !c->handshakes)
        snprintf(err, KILN_ERR_LEN,
                 "the coordinator at %s did not complete the connection handshake: it may require CURVE "
                 "(this client speaks plain TCP with the coordinator's token)", c->endpoint);
    else if (c->auth_failures)
        snprintf(err, KILN_ERR_LEN, "the coordinator at %s refused the connection (ZAP)", c->endpoint);
    else if (!c->connects && c->retries)
        snprintf(err, KILN_ERR_LEN, "no coordinator answers at %s (is `kiln coordinator` running there?)",
                 c->endpoint);
    else
        snprintf(err, KILN_ERR_LEN, "no answer from %s within %d ms: is `kiln coordinator` running there?",
                 c->endpoint, c->timeout_ms);
}

int kiln_send(kiln_conn *c, Kiln__V1__Envelope *req, char cid[64], char *err) {
    snprintf(cid, 64, "%s-%lu", c->prefix, ++c->next_id);
    req->protocol_version = KILN__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_1;
    req->correlation_id = cid;
    req->auth_token = c->token;
    size_t n = kiln__v1__envelope__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        snprintf(err, KILN_ERR_LEN, "out of memory packing a %zu-byte request", n);
        return -1;
    }
    kiln__v1__envelope__pack(req, buf);
    int rc = zmq_send(c->dealer, buf, n, 0);
    free(buf);
    if (rc < 0) {
        if (zmq_errno() == EAGAIN) kiln_no_answer(c, err);
        else snprintf(err, KILN_ERR_LEN, "sending to %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int kiln_receive(kiln_conn *c, int timeout_ms, Kiln__V1__Envelope **out, char *err) {
    zmq_pollitem_t item = {c->dealer, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0) {
        if (zmq_errno() == EINTR) return 0;
        snprintf(err, KILN_ERR_LEN, "polling %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    if (rc == 0) return 0;
    /* Frame 0 is the envelope (an empty REQ-style delimiter before it is skipped); any
     * further frame would be a tensor, which no reply to a client carries. */
    zmq_msg_t envelope;
    zmq_msg_init(&envelope);
    int frames = 0, more = 1, skipped = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, c->dealer, 0) < 0) {
            zmq_msg_close(&part);
            zmq_msg_close(&envelope);
            snprintf(err, KILN_ERR_LEN, "receiving from %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
            return -1;
        }
        more = zmq_msg_more(&part);
        if (frames == 0 && !skipped && more && zmq_msg_size(&part) == 0) {
            skipped = 1;
        } else if (frames++ == 0) {
            zmq_msg_move(&envelope, &part);
        }
        zmq_msg_close(&part);
    }
    Kiln__V1__Envelope *env =
        kiln__v1__envelope__unpack(NULL, zmq_msg_size(&envelope), (const uint8_t *)zmq_msg_data(&envelope));
    zmq_msg_close(&envelope);
    if (!env) {
        snprintf(err, KILN_ERR_LEN, "malformed reply from %s: frame 0 is not a kiln.v1.Envelope", c->endpoint);
        return -1;
    }
    if (env->protocol_version != KILN__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_1 || env->n_tensors != 0 ||
        frames != 1) {
        snprintf(err, KILN_ERR_LEN,
                 "malformed reply from %s: protocol_version %d (this client speaks 1), %zu tensor headers, "
                 "%d frames (a reply is one frame)",
                 c->endpoint, (int)env->protocol_version, env->n_tensors, frames);
        kiln__v1__envelope__free_unpacked(env, NULL);
        return -1;
    }
    *out = env;
    return 1;
}

int kiln_check_reply(kiln_conn *c, const Kiln__V1__Envelope *reply, Kiln__V1__Envelope__BodyCase expecting,
                     char *err) {
    if (reply->body_case == KILN__V1__ENVELOPE__BODY_ERROR && reply->error) {
        const Kiln__V1__Error *e = reply->error;
        const ProtobufCEnumValue *code = protobuf_c_enum_descriptor_get_value(&kiln__v1__error_code__descriptor,
                                                                               (int)e->code);
        snprintf(err, KILN_ERR_LEN, "coordinator at %s: %s%s%s%s", c->endpoint,
                 e->message && *e->message ? e->message : (code ? code->name : "error"),
                 e->field && *e->field ? " (field " : "", e->field && *e->field ? e->field : "",
                 e->field && *e->field ? ")" : "");
        return -1;
    }
    if (reply->body_case != expecting) {
        snprintf(err, KILN_ERR_LEN, "coordinator at %s answered body %d to a request expecting %d", c->endpoint,
                 (int)reply->body_case, (int)expecting);
        return -1;
    }
    return 0;
}

Kiln__V1__Envelope *kiln_call(kiln_conn *c, Kiln__V1__Envelope *req, Kiln__V1__Envelope__BodyCase expecting,
                              char *err) {
    char cid[64];
    if (kiln_send(c, req, cid, err) != 0) return NULL;
    long long deadline = now_ms() + c->timeout_ms;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            kiln_no_answer(c, err);
            return NULL;
        }
        Kiln__V1__Envelope *reply = NULL;
        int rc = kiln_receive(c, left < 100 ? (int)left : 100, &reply, err);
        if (rc < 0) return NULL;
        if (rc == 0) continue;
        if (reply->correlation_id && strcmp(reply->correlation_id, cid) == 0) {
            if (kiln_check_reply(c, reply, expecting, err) != 0) {
                kiln__v1__envelope__free_unpacked(reply, NULL);
                return NULL;
            }
            return reply;
        }
        kiln__v1__envelope__free_unpacked(reply, NULL); /* a late reply to an earlier request */
    }
}
