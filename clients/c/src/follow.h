/* Follows one job on the coordinator's progress feed with the Clone pattern. */
#ifndef KILN_FOLLOW_H
#define KILN_FOLLOW_H

#include <stdio.h>

#include "conn.h"

typedef struct {
    Kiln__V1__JobState state;
    unsigned blocks_total, blocks_done;
    char error[512]; /* the job's error message when it failed */
} kiln_job_view;

/* The lowercase name of a state ("running"). */
const char *kiln_state_name(Kiln__V1__JobState state, char buf[32]);

/* Subscribes to `publish` (every topic), asks for a snapshot over `c`, applies the updates
 * newer than it, and fetches a fresh snapshot on a gap in the sequence numbers or after a
 * silence; prints a line to `out` per state change and per module progress, and returns 0
 * once the job has finished (its end in *view), -1 with err set. */
int kiln_follow(kiln_conn *c, const char *publish, const char *job_id, FILE *out, kiln_job_view *view, char *err);

#endif
