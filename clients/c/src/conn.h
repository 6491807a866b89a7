/* A DEALER connection to a Kiln coordinator's ROUTER: requests matched to their replies
 * by correlation id, the coordinator's token, and why nothing came back. */
#ifndef KILN_CONN_H
#define KILN_CONN_H

#include <stddef.h>

#include "kiln/v1/envelope.pb-c.h"

#define KILN_ERR_LEN 1024

typedef struct {
    void *ctx;
    void *dealer;
    void *monitor; /* PAIR receiving the dealer's handshake events */
    const char *endpoint;
    char token[65]; /* empty: none */
    int timeout_ms;
    char prefix[17];
    unsigned long next_id;
    int connects, retries, handshakes, auth_failures, protocol_failures;
} kiln_conn;

/* Reads the coordinator's token (DATA_DIR/token: 64 lowercase hex digits) into out[65]. */
int kiln_read_token(const char *path, char out[65], char *err);

/* Opens the DEALER and connects it; 0 on success, else -1 with err set. */
int kiln_open(kiln_conn *c, void *ctx, const char *endpoint, const char *token_file, int timeout_ms, char *err);
void kiln_close(kiln_conn *c);

/* Sends a request (version, correlation id and token filled in); its id goes to cid[64]. */
int kiln_send(kiln_conn *c, Kiln__V1__Envelope *req, char cid[64], char *err);

/* One validated envelope within timeout_ms: 1 and *out (free with
 * kiln__v1__envelope__free_unpacked), 0 on timeout, -1 with err set. */
int kiln_receive(kiln_conn *c, int timeout_ms, Kiln__V1__Envelope **out, char *err);

/* Sends a request and waits for the reply with its id; a kiln.v1.Error reply or another
 * kind than `expecting` is an error. NULL with err set on failure. */
Kiln__V1__Envelope *kiln_call(kiln_conn *c, Kiln__V1__Envelope *req, Kiln__V1__Envelope__BodyCase expecting,
                              char *err);

/* The error text of a reply that is a kiln.v1.Error or not of the kind expected; 0 if fine. */
int kiln_check_reply(kiln_conn *c, const Kiln__V1__Envelope *reply, Kiln__V1__Envelope__BodyCase expecting,
                     char *err);

/* Why no answer came: a failed handshake, nobody listening, or a slow coordinator. */
void kiln_no_answer(kiln_conn *c, char *err);

#endif
