/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodectl: the command-line client of a node's admin API (architecture.md,
 * "Admin API and nodectl"). What the three files share: a blocking HTTP/1.1
 * client (nodectl_client.c) and the renderers for people (nodectl_render.c).
 * Single-threaded, a CLI: blocking sockets with a deadline are fine here.
 *
 * --addr takes HOST:PORT, [V6]:PORT, or unix:PATH (or an absolute path)
 * for an admin API on a unix socket; --token sends "Authorization: Bearer".
 *
 * Exit status, for automation: 0 success, 1 the node answered with an error
 * (non-2xx, or a body that is not the JSON we asked for), 2 usage error or the
 * node could not be reached. Every failure prints one line on stderr.
 */
#ifndef SH_NODECTL_H
#define SH_NODECTL_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define NODECTL_OK     0
#define NODECTL_ENODE  1 /* the node answered with an error */
#define NODECTL_EUSAGE 2 /* bad usage, or the node is unreachable */

#define NODECTL_DEFAULT_ADDR "127.0.0.1:9901"
#define NODECTL_MAX_RESPONSE (16u << 20) /* a members list of 10,000 nodes fits */

typedef struct {
    int status; /* HTTP status code */
    char *body; /* NUL-terminated, malloc'd; the caller frees */
    size_t body_len;
} nodectl_resp_t;

/*
 * One request to addr ("host:port", "[v6]:port"; names are resolved) with
 * Connection: close, body optional (JSON). Waits at most timeout_ms for the
 * whole exchange. Returns 0 and fills *r (any HTTP status), or NODECTL_EUSAGE
 * with one line written to err (errlen bytes) when the node is unreachable or
 * the answer is not HTTP.
 */
int nodectl_request(const char *addr, const char *method, const char *path, const char *body,
                    const char *token, int timeout_ms, nodectl_resp_t *r, char *err, size_t errlen);

/*
 * Follow a Server-Sent Events stream: on_event(ud, event, data) for each
 * event until it returns non-zero (then NODECTL_OK) or the stream ends
 * (NODECTL_EUSAGE, the reason in err). A non-200 answer gives
 * NODECTL_ENODE with *status and its body in err. addr and token as
 * nodectl_request; timeout_ms bounds only the wait for the answer's head.
 */
int nodectl_stream(const char *addr, const char *path, const char *token, int timeout_ms,
                   int (*on_event)(void *ud, const char *event, const char *data), void *ud,
                   int *status, char *err, size_t errlen);

/* The CA file that verifies an https:// admin address (--cacert or
 * $SHOAL_CACERT); NULL: the system's CAs. */
extern const char *nodectl_tls_cafile;

/* Free what nodectl_request filled in. */
void nodectl_resp_dispose(nodectl_resp_t *r);

/*
 * The members array of GET /v1/members as an aligned table on out. color:
 * status in ANSI colours (only when out is a terminal). Returns 0, or -1 if
 * the JSON is not an array of member objects.
 */
int nodectl_render_members(FILE *out, const json_t *members, int color);

/* The object of GET /v1/stats as "name  value" lines, keys sorted. */
int nodectl_render_stats(FILE *out, const json_t *stats);

/* GET /v1/keyring: the installed key ids, the primary one marked, and
 * how many members hold each. */
int nodectl_render_keyring(FILE *out, const json_t *keyring);

/* GET /v1/upstreams: one line per server. */
int nodectl_render_upstreams(FILE *out, const json_t *ups, int color);

/* GET /v1/limits: the global limit zones (nodectl_limits.c). */
int nodectl_render_limits(FILE *out, const json_t *limits, int color);

/* GET /v1/info: "name  value" lines in a fixed order. */
int nodectl_render_info(FILE *out, const json_t *info);

#endif
