/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodectl: flags and wiring only (style.md, cmd/). Talks to one node's
 * admin API, chosen by --addr, else $SHOAL_ADDR, else 127.0.0.1:9901.
 *
 *   nodectl [--addr HOST:PORT] members [--json]
 *   nodectl [--addr HOST:PORT] stats [--json]
 *   nodectl [--addr HOST:PORT] keyring [list [--json] | install KEY | use KEY | remove KEY]
 *   nodectl version
 *
 * Exit status: 0 success, 1 the node answered with an error, 2 usage error
 * or the node is unreachable; one line on stderr for every failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodectl.h"

#define TIMEOUT_MS 5000

static const char usage_text[] =
    "usage: nodectl [--addr HOST:PORT] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  members [--json]         the cluster as this node sees it\n"
    "  stats [--json]           gossip counters (packets, refusals, health)\n"
    "  keyring [list] [--json]  installed gossip key ids, the primary marked\n"
    "  keyring install KEY      install a key (64 hex digits or base64)\n"
    "  keyring use KEY          make an installed key the primary\n"
    "  keyring remove KEY       remove a key that is not the primary\n"
    "  version                  print nodectl's version\n"
    "\n"
    "Options:\n"
    "  --addr HOST:PORT  the node's admin listener (default: $SHOAL_ADDR, else " NODECTL_DEFAULT_ADDR ")\n"
    "  --json            print the admin API's JSON unchanged (for scripts)\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 success, 1 error from the node, 2 usage error or node unreachable.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nodectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see nodectl --help)\n");
    return NODECTL_EUSAGE;
}

/* The node's error body is {"error":"..."}; say that, else the status. */
static int node_error(const char *addr, const nodectl_resp_t *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    const char *msg = json_string_value(json_object_get(j, "error"));
    fprintf(stderr, "nodectl: node at %s answered %d: %s\n", addr, r->status,
            msg ? msg : "(no error message)");
    json_decref(j);
    return NODECTL_ENODE;
}

typedef int (*render_fn)(FILE *out, const json_t *j, int color);

static int render_members(FILE *out, const json_t *j, int color)
{
    return nodectl_render_members(out, j, color);
}
static int render_stats(FILE *out, const json_t *j, int color) { return nodectl_render_stats(out, j); }
static int render_keyring(FILE *out, const json_t *j, int color)
{
    return nodectl_render_keyring(out, j);
}

/* One request; --json prints the body as it came, otherwise render. */
static int call(const char *addr, const char *method, const char *path, const char *body,
                int json_out, render_fn render)
{
    nodectl_resp_t r;
    char err[512];
    if (nodectl_request(addr, method, path, body, TIMEOUT_MS, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "nodectl: %s\n", err);
        return NODECTL_EUSAGE;
    }
    int rc = NODECTL_OK;
    if (r.status < 200 || r.status > 299) {
        rc = node_error(addr, &r);
        goto out;
    }
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    if (j == NULL) {
        fprintf(stderr, "nodectl: node at %s sent invalid JSON for %s: %s\n", addr, path, je.text);
        rc = NODECTL_ENODE;
        goto out;
    }
    if (json_out) {
        fwrite(r.body, 1, r.body_len, stdout);
        if (r.body_len == 0 || r.body[r.body_len - 1] != '\n')
            fputc('\n', stdout);
    } else if (render != NULL) {
        /* Colour only for a person at a terminal, and never under NO_COLOR. */
        const char *nc = getenv("NO_COLOR");
        int color = isatty(STDOUT_FILENO) && (nc == NULL || *nc == 0);
        if (render(stdout, j, color) != 0) {
            fprintf(stderr, "nodectl: node at %s sent an unexpected document for %s\n", addr,
                    path);
            rc = NODECTL_ENODE;
        }
    }
    json_decref(j);
out:
    nodectl_resp_dispose(&r);
    if (rc == NODECTL_OK && fflush(stdout) != 0) {
        fprintf(stderr, "nodectl: cannot write the output\n");
        rc = NODECTL_ENODE;
    }
    return rc;
}

static int keyring_op(const char *addr, const char *op, const char *key)
{
    json_t *b = json_pack("{s:s}", "key", key);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (body == NULL)
        return usage_error("invalid key argument%s", "");
    char path[64];
    snprintf(path, sizeof(path), "/v1/keyring/%s", op);
    int rc = call(addr, "POST", path, body, 0, NULL);
    free(body);
    if (rc == NODECTL_OK)
        printf("%s: ok\n", op);
    return rc;
}

int main(int argc, char **argv)
{
    const char *addr = getenv("SHOAL_ADDR");
    if (addr == NULL || *addr == 0)
        addr = NODECTL_DEFAULT_ADDR;
    int json_out = 0;
    const char *pos[4];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "help") == 0) {
            fputs(usage_text, stdout);
            return NODECTL_OK;
        } else if (strcmp(a, "--json") == 0) {
            json_out = 1;
        } else if (strcmp(a, "--addr") == 0 || strcmp(a, "-a") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs HOST:PORT", a);
            addr = argv[++i];
        } else if (strncmp(a, "--addr=", 7) == 0) {
            addr = a + 7;
        } else if (a[0] == '-' && a[1] != 0) {
            return usage_error("unknown option \"%s\"", a);
        } else if (npos < 4) {
            pos[npos++] = a;
        } else {
            return usage_error("unexpected argument \"%s\"", a);
        }
    }
    if (npos == 0)
        return usage_error("no command given%s", "");
    const char *cmd = pos[0];
    if (strcmp(cmd, "version") == 0) {
        if (npos != 1)
            return usage_error("\"version\" takes no argument%s", "");
        printf("nodectl %s\n", SHOAL_VERSION);
        return NODECTL_OK;
    }
    if (*addr == 0)
        return usage_error("empty --addr%s", "");
    if (strcmp(cmd, "members") == 0) {
        if (npos != 1)
            return usage_error("\"members\" takes no argument besides --json%s", "");
        return call(addr, "GET", "/v1/members", NULL, json_out,
                    render_members);
    }
    if (strcmp(cmd, "stats") == 0) {
        if (npos != 1)
            return usage_error("\"stats\" takes no argument besides --json%s", "");
        return call(addr, "GET", "/v1/stats", NULL, json_out, render_stats);
    }
    if (strcmp(cmd, "keyring") == 0) {
        const char *sub = npos > 1 ? pos[1] : "list";
        if (strcmp(sub, "list") == 0) {
            if (npos > 2)
                return usage_error("\"keyring list\" takes no argument%s", "");
            return call(addr, "GET", "/v1/keyring", NULL, json_out, render_keyring);
        }
        if (strcmp(sub, "install") == 0 || strcmp(sub, "use") == 0 ||
            strcmp(sub, "remove") == 0) {
            if (npos != 3)
                return usage_error("\"keyring %s\" needs KEY", sub);
            return keyring_op(addr, sub, pos[2]);
        }
        return usage_error("unknown keyring command \"%s\"", sub);
    }
    return usage_error("unknown command \"%s\"", cmd);
}
