#include "follow.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define MAX_PENDING 10000     /* updates held while a snapshot is on its way */
#define IDLE_RESYNC_MS 5000   /* no feed traffic this long: ask for a fresh snapshot */
#define TICK_MS 500

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* "JOB_STATE_RUNNING" -> "running": the value's name after `prefix`, lowercase. */
static const char *enum_name(const ProtobufCEnumDescriptor *d, int value, const char *prefix, char buf[32]) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v) {
        snprintf(buf, 32, "value %d", value);
        return buf;
    }
    const char *name = strncmp(v->name, prefix, strlen(prefix)) == 0 ? v->name + strlen(prefix) : v->name;
    size_t i = 0;
    for (; name[i] && i < 31; i++) buf[i] = (char)tolower((unsigned char)name[i]);
    buf[i] = 0;
    return buf;
}

const char *kiln_state_name(Kiln__V1__JobState state, char buf[32]) {
    return enum_name(&kiln__v1__job_state__descriptor, (int)state, "JOB_STATE_", buf);
}

static int terminal(Kiln__V1__JobState s) {
    return s == KILN__V1__JOB_STATE__JOB_STATE_SUCCEEDED || s == KILN__V1__JOB_STATE__JOB_STATE_FAILED ||
           s == KILN__V1__JOB_STATE__JOB_STATE_CANCELLED;
}

typedef struct {
    const char *job_id;
    FILE *out;
    kiln_job_view *view;
    int printed; /* a state line was printed (the first one always is) */
    /* The Clone pattern's ordering (as Kiln's CloneSequencer). */
    int awaiting_snapshot, needs_snapshot;
    uint64_t last_sequence;
    Kiln__V1__Envelope **pending; /* progress_update envelopes, owned */
    size_t n_pending;
} follower;

static void set_state(follower *f, Kiln__V1__JobState state) {
    if (f->printed && state == f->view->state) return;
    f->printed = 1;
    f->view->state = state;
    char name[32];
    fprintf(f->out, "job %s: %s (%u/%u blocks)\n", f->job_id, kiln_state_name(state, name), f->view->blocks_done,
            f->view->blocks_total);
    fflush(f->out);
}

static void apply_status(follower *f, const Kiln__V1__JobStatus *s) {
    f->view->blocks_total = s->blocks_total;
    f->view->blocks_done = s->blocks_done;
    if (s->error && s->error->message) snprintf(f->view->error, sizeof f->view->error, "%s", s->error->message);
    set_state(f, s->state);
}

static void apply_update(follower *f, const Kiln__V1__ProgressUpdate *u) {
    if (strcmp(u->job_id, f->job_id) != 0) return;
    if (u->status) apply_status(f, u->status);
    if (u->state != KILN__V1__JOB_STATE__JOB_STATE_UNSPECIFIED) set_state(f, u->state);
    const Kiln__V1__ModuleProgress *m = u->module;
    if (m) {
        char phase[32];
        enum_name(&kiln__v1__phase__descriptor, (int)m->phase, "PHASE_", phase);
        fprintf(f->out, "block %u %s%s%s: %u/%u%s%s\n", m->block, phase, *m->module ? " " : "", m->module, m->done,
                m->total, *m->worker_id ? " on " : "", m->worker_id);
        fflush(f->out);
    }
}

/* An update past the snapshot: applied if newer than the last seen; a skipped number
 * means the feed lost something (a fresh snapshot is asked for). Frees it. */
static void accept(follower *f, Kiln__V1__Envelope *env) {
    const Kiln__V1__ProgressUpdate *u = env->progress_update;
    if (u->sequence > f->last_sequence) {
        if (u->sequence != f->last_sequence + 1) f->needs_snapshot = 1;
        f->last_sequence = u->sequence;
        apply_update(f, u);
    }
    kiln__v1__envelope__free_unpacked(env, NULL);
}

static void receive_update(follower *f, Kiln__V1__Envelope *env) {
    if (!f->awaiting_snapshot) {
        accept(f, env);
        return;
    }
    if (f->n_pending == MAX_PENDING) { /* the oldest goes: the gap shows, the next snapshot covers it */
        kiln__v1__envelope__free_unpacked(f->pending[0], NULL);
        memmove(f->pending, f->pending + 1, (MAX_PENDING - 1) * sizeof *f->pending);
        f->n_pending--;
    }
    f->pending[f->n_pending++] = env;
}

static int by_sequence(const void *a, const void *b) {
    uint64_t x = (*(Kiln__V1__Envelope *const *)a)->progress_update->sequence;
    uint64_t y = (*(Kiln__V1__Envelope *const *)b)->progress_update->sequence;
    return x < y ? -1 : x > y;
}

static void snapshot_received(follower *f, uint64_t sequence) {
    f->awaiting_snapshot = 0;
    f->needs_snapshot = 0;
    f->last_sequence = sequence; /* the truth, even below what we saw (a restarted coordinator) */
    qsort(f->pending, f->n_pending, sizeof *f->pending, by_sequence);
    for (size_t i = 0; i < f->n_pending; i++) accept(f, f->pending[i]);
    f->n_pending = 0;
}

/* [topic][envelope] -> the envelope if it holds a valid progress_update, else NULL (dropped). */
static Kiln__V1__Envelope *read_feed(void *sub) {
    zmq_msg_t part, envelope;
    zmq_msg_init(&envelope);
    int frames = 0, more = 1;
    while (more) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sub, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (frames++ == 1) zmq_msg_copy(&envelope, &part);
        zmq_msg_close(&part);
    }
    Kiln__V1__Envelope *env = NULL;
    if (frames == 2)
        env = kiln__v1__envelope__unpack(NULL, zmq_msg_size(&envelope), (const uint8_t *)zmq_msg_data(&envelope));
    zmq_msg_close(&envelope);
    if (env && (env->protocol_version != KILN__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_1 || env->n_tensors ||
                env->body_case != KILN__V1__ENVELOPE__BODY_PROGRESS_UPDATE || !env->progress_update)) {
        kiln__v1__envelope__free_unpacked(env, NULL);
        env = NULL;
    }
    return env;
}

static int request_snapshot(kiln_conn *c, follower *f, char cid[64], char *err) {
    Kiln__V1__Envelope req = KILN__V1__ENVELOPE__INIT;
    Kiln__V1__SnapshotRequest snap = KILN__V1__SNAPSHOT_REQUEST__INIT;
    snap.job_id = (char *)f->job_id;
    req.body_case = KILN__V1__ENVELOPE__BODY_SNAPSHOT_REQUEST;
    req.snapshot_request = &snap;
    f->awaiting_snapshot = 1;
    f->needs_snapshot = 0;
    return kiln_send(c, &req, cid, err);
}

/* A snapshot reply: its state of the job first, then the buffered updates newer than it. */
static int apply_snapshot(kiln_conn *c, follower *f, Kiln__V1__Envelope *reply, char *err) {
    if (kiln_check_reply(c, reply, KILN__V1__ENVELOPE__BODY_SNAPSHOT_RESPONSE, err) != 0) return -1;
    const Kiln__V1__SnapshotResponse *s = reply->snapshot_response;
    for (size_t i = 0; i < s->n_jobs; i++) {
        if (strcmp(s->jobs[i]->job_id, f->job_id) == 0) {
            apply_status(f, s->jobs[i]);
            snapshot_received(f, s->sequence);
            return 0;
        }
    }
    snprintf(err, KILN_ERR_LEN, "job %s is not known to the coordinator at %s", f->job_id, c->endpoint);
    return -1;
}

int kiln_follow(kiln_conn *c, const char *publish, const char *job_id, FILE *out, kiln_job_view *view, char *err) {
    memset(view, 0, sizeof *view);
    follower f = {.job_id = job_id, .out = out, .view = view, .awaiting_snapshot = 1};
    f.pending = calloc(MAX_PENDING, sizeof *f.pending);
    void *sub = zmq_socket(c->ctx, ZMQ_SUB);
    int linger = 0, hwm = 100000, rc = -1;
    int64_t max = 64 << 20;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0); /* every topic: the global sequence shows losses */
    if (!f.pending) {
        snprintf(err, KILN_ERR_LEN, "out of memory");
        goto done;
    }
    if (zmq_connect(sub, publish) != 0) {
        snprintf(err, KILN_ERR_LEN, "progress endpoint \"%s\": %s", publish, zmq_strerror(zmq_errno()));
        goto done;
    }
    char pending_id[64] = "";
    long long deadline = 0, last_activity = now_ms();
    int seen_snapshot = 0;
    for (;;) {
        long long now = now_ms();
        if (!*pending_id && (!seen_snapshot || f.needs_snapshot || now - last_activity >= IDLE_RESYNC_MS)) {
            if (request_snapshot(c, &f, pending_id, err) != 0) goto done;
            deadline = now + c->timeout_ms;
        }
        if (*pending_id && now >= deadline) {
            kiln_no_answer(c, err);
            goto done;
        }
        long long wait = *pending_id && deadline - now < TICK_MS ? deadline - now : TICK_MS;
        zmq_pollitem_t items[2] = {{sub, 0, ZMQ_POLLIN, 0}, {c->dealer, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, (long)wait);
        int events = 0;
        size_t size = sizeof events;
        while (zmq_getsockopt(sub, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN)) {
            last_activity = now_ms();
            Kiln__V1__Envelope *env = read_feed(sub);
            if (env) receive_update(&f, env);
        }
        for (;;) {
            Kiln__V1__Envelope *reply = NULL;
            int got = kiln_receive(c, 0, &reply, err);
            if (got < 0) goto done;
            if (got == 0) break;
            if (*pending_id && reply->correlation_id && strcmp(reply->correlation_id, pending_id) == 0) {
                int ok = apply_snapshot(c, &f, reply, err);
                kiln__v1__envelope__free_unpacked(reply, NULL);
                if (ok != 0) goto done;
                *pending_id = 0;
                seen_snapshot = 1;
                last_activity = now_ms();
            } else {
                kiln__v1__envelope__free_unpacked(reply, NULL);
            }
        }
        if (seen_snapshot && terminal(view->state)) {
            rc = 0;
            goto done;
        }
    }
done:
    for (size_t i = 0; f.pending && i < f.n_pending; i++) kiln__v1__envelope__free_unpacked(f.pending[i], NULL);
    free(f.pending);
    zmq_close(sub);
    return rc;
}
