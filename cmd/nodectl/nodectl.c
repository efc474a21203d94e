/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodectl: flags and wiring only (style.md, cmd/). Talks to one node's
 * admin API, chosen by --addr, else $SHOAL_ADDR, else 127.0.0.1:9901, with
 * the bearer token of --token, else $SHOAL_TOKEN (issue 6). `nodectl help`
 * lists the commands, `nodectl help CMD` or `nodectl CMD --help` explains
 * one; docs/nodectl.1 is the manual page.
 *
 * Exit status: 0 success, 1 the node answered with an error, 2 usage error
 * or the node is unreachable; one line on stderr for every failure.
 */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodectl.h"

#define TIMEOUT_MS      5000
#define JOIN_TIMEOUT_MS 30000
#define MAX_POS         70

static const char usage_text[] =
    "usage: nodectl [--addr ADDR] [--token TOKEN] COMMAND [ARGS] [--json]\n"
    "\n"
    "Commands:\n"
    "  members [--status S] [--tag K=V]  the cluster as this node sees it\n"
    "  info                     this node: name, address, status, keyring, uptime\n"
    "  join ADDR...             join the cluster through these gossip addresses\n"
    "  leave                    this node leaves the cluster (it keeps serving HTTP)\n"
    "  force-leave NAME         mark a failed member as left, everywhere\n"
    "  keys list                gossip key ids, the primary, how many members hold each\n"
    "  keys install KEY         install a key on every node (gossiped)\n"
    "  keys use KEY             make an installed key the primary everywhere\n"
    "  keys remove KEY          remove a key that is not the primary, everywhere\n"
    "  keygen                   print a new random key (gossip key or admin token)\n"
    "  reload                   reload the node's configuration\n"
    "  upstreams                upstream servers and their passive health on this node\n"
    "  limits                   global rate limits: rate, this node's share, degraded or not\n"
    "  monitor                  follow the node's events (joins, leaves, failures, ...)\n"
    "  stats                    gossip counters\n"
    "  cache purge --key K | --prefix P | --tag T [--soft] [--async] [--local]\n"
    "                           purge every node's caches (who applied it)\n"
    "  cache stats              the caches' counters and the purge channel's\n"
    "  version                  print nodectl's version\n"
    "  help [COMMAND]           this help, or one command's\n"
    "  (`keyring` is another name for `keys`)\n"
    "\n"
    "Options:\n"
    "  --addr ADDR    the node's admin API: HOST:PORT, https://HOST:PORT (an admin\n"
    "                 listener with TLS) or unix:PATH\n"
    "                 (default: $SHOAL_ADDR, else " NODECTL_DEFAULT_ADDR ")\n"
    "  --cacert FILE  CA certificates that verify an https:// admin address\n"
    "                 (default: $SHOAL_CACERT, else the system's)\n"
    "  --token TOKEN  bearer token for the admin API (default: $SHOAL_TOKEN)\n"
    "  --json         print the admin API's JSON unchanged (for scripts)\n"
    "  -h, --help     help (after a command: that command's)\n"
    "\n"
    "Exit status: 0 success, 1 error from the node, 2 usage error or node unreachable.\n";

typedef struct {
    const char *name;
    const char *usage;
    const char *help;
} cmd_help_t;

static const cmd_help_t helps[] = {
    {"members", "members [--status alive|suspect|dead|left] [--tag KEY=VALUE] [--json]",
     "List the members this node knows: name, gossip address, status, incarnation, time\n"
     "since the last status change, version and tags. --status and --tag filter (the\n"
     "node filters, so --json shows the same subset)."},
    {"info", "info [--json]",
     "Show this node: its member entry, cluster name, addresses, "
     "keyring primary,\nmembers seen and uptime."},
    {"join", "join ADDR... [--json]",
     "Push-pull with each gossip address (HOST:PORT; a host name is resolved by the\n"
     "node, off its loop); succeeds if at least one answered. Exit 1 if none did.\n"
     "After `leave`, join makes the node a member again (as Serf's -rejoin)."},
    {"leave", "leave [--json]",
     "Leave the cluster gracefully: the others see this node as left. The node keeps\n"
     "serving HTTP; `nodectl join` makes it a member again."},
    {"force-leave", "force-leave NAME [--json]",
     "Mark a failed (dead or suspect) member as left on every node, so it is no longer\n"
     "reconnected to. Refused for an alive member."},
    {"keys", "keys [list|install KEY|use KEY|remove KEY] [--json]",
     "Manage the gossip keyring. A change made on one node is gossiped to all (sealed\n"
     "under the current keys) and persisted by each beside its encrypt_key_file.\n"
     "Rotation: keys install NEW; wait until `keys list` shows it held by all members;\n"
     "keys use NEW; keys remove OLD. KEY is 32 bytes as 64 hex digits or base64\n"
     "(what `nodectl keygen` prints)."},
    {"keyring", "keyring [list|install KEY|use KEY|remove KEY] [--json]",
     "Another name for `keys`."},
    {"keygen", "keygen",
     "Print a new random 32-byte key in base64, from libsodium's random generator: a line\n"
     "for encrypt_key_file, for `keys install`, or for an admin_token_file."},
    {"reload", "reload [--json]",
     "Reload the node's configuration (as SIGHUP does). If it loads, new connections use\n"
     "it and open ones finish on the old one; if not, the error (file:line) is printed,\n"
     "exit 1, and the running configuration stays."},
    {"upstreams", "upstreams [--json]",
     "The upstream groups and each server's passive health on this node, summed over\n"
     "its workers (state up, down, or partly down when only some workers took it out,\n"
     "down (health check) when active checks or the cluster took it out); then, for\n"
     "servers under health_check, the cluster view: CLUSTER (a quorum of observers\n"
     "sees it failing: down), HERE (this node's probes, or not probing), PROBED BY\n"
     "(the nodes chosen to probe it) and OBSERVED (each node's last word: active\n"
     "result, +passive when its passive health has it out)."},
    {"monitor", "monitor [--json]",
     "Follow the node's event stream (member-join, member-leave, member-failed,\n"
     "member-suspect, member-alive, keyring, reload, health) until interrupted. --json prints\n"
     "each event's JSON on its own line."},
    {"limits", "limits [--json]",
     "The global limit_req zones (limit_req_zone ... global): configured rate, the rate\n"
     "this node's side admits now (its share while degraded), the admitted rates of\n"
     "this node and of the cluster (estimate), degraded or not and why, hot keys and\n"
     "their shard owners, and the limit channel's counters."},
    {"stats", "stats [--json]", "Gossip counters: packets, refusals by reason, health."},
    {"cache",
     "cache purge (--key KEY | --prefix PREFIX | --tag TAG) [--soft] [--async] [--local] "
     "[--json] | cache stats [--json]",
     "purge: remove from the proxy caches of every node of the cluster the entry of a key\n"
     "(the evaluated proxy_cache_key, e.g. http127.0.0.1:9001/api/v1/models), every key\n"
     "starting with a prefix, or every entry stored with a tag (proxy_cache_tag_header,\n"
     "Surrogate-Key by default). --soft marks them stale instead (`proxy_cache_use_stale\n"
     "updating` serves the old entry while one request refreshes it). It returns when\n"
     "every live member has applied it and says who did (exit status 1 when some did not\n"
     "within 5 s); --async returns at once; --local purges this node only.\n"
     "stats: per zone, requests by cache status, bytes served from the cache, fills,\n"
     "evictions, entries and stored bytes; then the purge channel's counters (issued,\n"
     "received, applied, lag, log). --json prints GET /v1/cache/stats (the zones);\n"
     "the channel's figures are GET /v1/cache/purges."},
    {"version", "version", "Print nodectl's version."},
    {"help", "help [COMMAND]", "Print the usage, or one command's."},
    {NULL, NULL, NULL}};

static const cmd_help_t *find_help(const char *cmd)
{
    for (int i = 0; helps[i].name; i++)
        if (strcmp(helps[i].name, cmd) == 0)
            return &helps[i];
    return NULL;
}

static int print_help(const char *cmd)
{
    const cmd_help_t *h = cmd ? find_help(cmd) : NULL;
    if (cmd != NULL && h == NULL) {
        fprintf(stderr, "nodectl: no command \"%s\" (see nodectl --help)\n", cmd);
        return NODECTL_EUSAGE;
    }
    if (h == NULL)
        fputs(usage_text, stdout);
    else
        printf("usage: nodectl [--addr ADDR] [--token TOKEN] %s\n\n%s\n", h->usage, h->help);
    return NODECTL_OK;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nodectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see nodectl --help)\n");
    return NODECTL_EUSAGE;
}

/* The node's error body is {"error":"..."}; say that, else the status. */
static int node_error(const char *addr, int status, const char *body)
{
    json_t *j = json_loads(body ? body : "", 0, NULL);
    const char *msg = json_string_value(json_object_get(j, "error"));
    char one[512];
    snprintf(one, sizeof(one), "%s", msg ? msg : "(no error message)");
    for (char *p = one; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "nodectl: node at %s answered %d: %s\n", addr, status, one);
    json_decref(j);
    return NODECTL_ENODE;
}

typedef int (*render_fn)(FILE *out, const json_t *j, int color);

static int use_color(void)
{
    /* Colour only for a person at a terminal, and never under NO_COLOR. */
    const char *nc = getenv("NO_COLOR");
    return isatty(STDOUT_FILENO) && (nc == NULL || *nc == 0);
}

static int render_members(FILE *out, const json_t *j, int color)
{
    return nodectl_render_members(out, j, color);
}
static int render_stats(FILE *out, const json_t *j, int color)
{
    return nodectl_render_stats(out, j);
}
static int render_keyring(FILE *out, const json_t *j, int color)
{
    return nodectl_render_keyring(out, j);
}
static int render_info(FILE *out, const json_t *j, int color)
{
    return nodectl_render_info(out, j);
}
static int render_upstreams(FILE *out, const json_t *j, int color)
{
    return nodectl_render_upstreams(out, j, color);
}
static int render_limits(FILE *out, const json_t *j, int color)
{
    return nodectl_render_limits(out, j, color);
}

typedef struct {
    const char *addr, *token;
    int json_out;
} ctx_t;

static void names_line(FILE *out, const char *label, const json_t *arr)
{
    if (json_array_size(arr) == 0)
        return;
    fprintf(out, "  %s (%zu):", label, json_array_size(arr));
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) fprintf(out, " %s", json_string_value(v));
    fputc('\n', out);
}

static int render_purge(FILE *out, const json_t *j, int color)
{
    (void)color;
    const json_t *n = json_object_get(j, "purged");
    if (!json_is_integer(n))
        return -1;
    fprintf(out, "purged %lld entr%s%s", (long long)json_integer_value(n),
            json_integer_value(n) == 1 ? "y" : "ies",
            json_is_true(json_object_get(j, "soft")) ? " (marked stale)" : "");
    const json_t *ap = json_object_get(j, "applied");
    if (!json_is_array(ap)) {
        fputc('\n', out);
        return 0;
    }
    const json_t *na = json_object_get(j, "not_applied"), *gone = json_object_get(j, "gone");
    if (json_is_true(json_object_get(j, "async")))
        fprintf(out, " here; purge %s/%lld sent to the cluster (--async: not waited for)\n",
                json_string_value(json_object_get(j, "origin")),
                (long long)json_integer_value(json_object_get(j, "seq")));
    else
        fprintf(out, " here; applied by %zu of %zu members in %lld ms%s\n", json_array_size(ap),
                json_array_size(ap) + json_array_size(na),
                (long long)json_integer_value(json_object_get(j, "elapsed_ms")),
                json_is_true(json_object_get(j, "complete")) ? "" : " (INCOMPLETE)");
    names_line(out, "applied", ap);
    names_line(out, "not applied", na);
    names_line(out, "left or failed meanwhile", gone);
    return 0;
}

/* One request; --json prints the body as it came, otherwise render (or,
 * with render NULL, print `ok_text` with %s the JSON's "result" if any). */
static int call(const ctx_t *x, const char *method, const char *path, const char *body,
                int timeout_ms, render_fn render, const char *ok_text)
{
    nodectl_resp_t r;
    char err[512];
    if (nodectl_request(x->addr, method, path, body, x->token, timeout_ms, &r, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "nodectl: %s\n", err);
        return NODECTL_EUSAGE;
    }
    int rc = NODECTL_OK;
    if (r.status == 504 && render == render_purge && r.body != NULL) {
        /* not every member applied the purge in time: say who did */
        json_t *j = json_loads(r.body, 0, NULL);
        if (j != NULL && json_is_array(json_object_get(j, "applied"))) {
            if (x->json_out)
                printf("%s\n", r.body);
            else
                render_purge(stdout, j, 0);
            json_decref(j);
            rc = NODECTL_ENODE;
            goto out;
        }
        json_decref(j);
    }
    if (r.status < 200 || r.status > 299) {
        rc = node_error(x->addr, r.status, r.body);
        goto out;
    }
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    if (j == NULL) {
        fprintf(stderr, "nodectl: node at %s sent invalid JSON for %s: %s\n", x->addr, path,
                je.text);
        rc = NODECTL_ENODE;
        goto out;
    }
    if (x->json_out) {
        fwrite(r.body, 1, r.body_len, stdout);
        if (r.body_len == 0 || r.body[r.body_len - 1] != '\n')
            fputc('\n', stdout);
    } else if (render != NULL) {
        if (render(stdout, j, use_color()) != 0) {
            fprintf(stderr, "nodectl: node at %s sent an unexpected document for %s\n", x->addr,
                    path);
            rc = NODECTL_ENODE;
        }
    } else if (ok_text != NULL) {
        /* "%s" stands for the node's own words (its "result") */
        const char *res = json_string_value(json_object_get(j, "result"));
        puts(strcmp(ok_text, "%s") == 0 ? (res ? res : "ok") : ok_text);
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

static int keys_op(const ctx_t *x, const char *op, const char *key)
{
    json_t *b = json_pack("{s:s}", "key", key);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (body == NULL)
        return usage_error("invalid key argument%s", "");
    char path[64], text[128];
    snprintf(path, sizeof(path), "/v1/keyring/%s", op);
    snprintf(text, sizeof(text), "keys %s: ok (gossiped to the cluster)", op);
    int rc = call(x, "POST", path, body, TIMEOUT_MS, NULL, text);
    sodium_memzero(body, strlen(body));
    free(body);
    return rc;
}

/* %-escape a query value. */
static void qescape(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; *s && o + 4 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, n - o, "%%%02X", ch);
    }
    out[o] = 0;
}

typedef struct {
    int json_out, color;
} mon_t;

static int on_event(void *ud, const char *event, const char *data)
{
    mon_t *m = ud;
    if (m->json_out) {
        printf("%s\n", data);
    } else {
        json_t *j = json_loads(data, 0, NULL);
        time_t now = time(NULL);
        struct tm tm;
        char ts[32];
        localtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        const char *col = !m->color                              ? ""
                          : strcmp(event, "member-failed") == 0  ? "\033[31m"
                          : strcmp(event, "member-suspect") == 0 ? "\033[33m"
                          : strcmp(event, "member-join") == 0    ? "\033[32m"
                                                                 : "";
        printf("%s  %s%-14s%s", ts, col, event, *col ? "\033[0m" : "");
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            if (strcmp(k, "type") == 0 || strcmp(k, "time_unix_ms") == 0)
                continue;
            char *s = json_is_string(v) ? strdup(json_string_value(v))
                                        : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("  %s=%s", k, s ? s : "?");
            free(s);
        }
        putchar('\n');
        json_decref(j);
    }
    return fflush(stdout) != 0; /* stop when nobody reads */
}

static int monitor(const ctx_t *x)
{
    mon_t m = {x->json_out, use_color()};
    int status = 0;
    char err[2048];
    int rc = nodectl_stream(x->addr, "/v1/events", x->token, TIMEOUT_MS, on_event, &m, &status, err,
                            sizeof(err));
    if (rc == NODECTL_ENODE)
        return node_error(x->addr, status, err);
    if (rc != NODECTL_OK)
        fprintf(stderr, "nodectl: %s\n", err);
    return rc;
}

static int keygen(void)
{
    uint8_t key[32];
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    if (sodium_init() < 0) {
        fprintf(stderr, "nodectl: libsodium cannot initialise\n");
        return NODECTL_EUSAGE;
    }
    randombytes_buf(key, sizeof(key));
    sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
    printf("%s\n", b64);
    sodium_memzero(key, sizeof(key));
    sodium_memzero(b64, sizeof(b64));
    return fflush(stdout) == 0 ? NODECTL_OK : NODECTL_ENODE;
}

/* GET /v1/cache/stats: one block of "name  value" lines per zone. */
static int render_cache_stats(FILE *out, const json_t *j, int color)
{
    (void)color;
    if (!json_is_array(j))
        return -1;
    size_t i;
    json_t *z;
    if (json_array_size(j) == 0)
        fputs("no proxy_cache_path on this node\n", out);
    json_array_foreach(j, i, z)
    {
        if (i > 0)
            fputc('\n', out);
        if (nodectl_render_stats(out, z) != 0)
            return -1;
    }
    return 0;
}

/* GET /v1/cache/purges: the purge channel's counters. */
static void render_purges(FILE *out, const json_t *j)
{
#define N(k) (long long)json_integer_value(json_object_get(j, k))
    fprintf(out,
            "\npurge channel\n  issued here     %lld\n  received        %lld\n"
            "  applied         %lld\n  caught up       %lld (from push-pull logs)\n"
            "  duplicates      %lld\n  retries         %lld\n  flushes         %lld\n"
            "  lag avg / max   %.1f / %lld ms\n  log             %lld of %lld records\n"
            "  holding lookups %s\n",
            N("issued"), N("received"), N("applied"), N("caught_up"), N("duplicates"), N("retries"),
            N("flushes"), json_number_value(json_object_get(j, "lag_ms_avg")), N("lag_ms_max"),
            N("log_entries"), N("log_max"),
            json_is_true(json_object_get(j, "holding")) ? "yes" : "no");
#undef N
    size_t i;
    const json_t *o;
    json_array_foreach(json_object_get(j, "origins"), i, o)
    {
        fprintf(out, "  origin %-16s applied %lld, last seq %lld\n",
                json_string_value(json_object_get(o, "origin")),
                (long long)json_integer_value(json_object_get(o, "applied")),
                (long long)json_integer_value(json_object_get(o, "last_seq")));
    }
}

/* nodectl cache purge|stats */
static int cache_cmd(const ctx_t *x, const char *const *pos, int npos, const char *key,
                     const char *prefix, const char *tag, int soft, int async, int local)
{
    const char *sub = npos > 1 ? pos[1] : NULL;
    if (npos != 2 || sub == NULL || (strcmp(sub, "purge") != 0 && strcmp(sub, "stats") != 0))
        return usage_error("\"cache\" takes purge or stats%s", "");
    if (*x->addr == 0)
        return usage_error("empty --addr%s", "");
    if (strcmp(sub, "stats") == 0) {
        if (key || prefix || tag || soft || async || local)
            return usage_error("\"cache stats\" takes no option but --json%s", "");
        int rc = call(x, "GET", "/v1/cache/stats", NULL, TIMEOUT_MS, render_cache_stats, NULL);
        if (rc == NODECTL_OK && !x->json_out) {
            nodectl_resp_t r;
            char err[512];
            if (nodectl_request(x->addr, "GET", "/v1/cache/purges", NULL, x->token, TIMEOUT_MS, &r,
                                err, sizeof(err)) == 0) {
                json_t *j = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
                if (j != NULL)
                    render_purges(stdout, j);
                json_decref(j);
                nodectl_resp_dispose(&r);
            }
        }
        return rc;
    }
    if ((key != NULL) + (prefix != NULL) + (tag != NULL) != 1)
        return usage_error("\"cache purge\" needs one of --key, --prefix or --tag%s", "");
    json_t *b = json_pack("{s:s,s:b}",
                          key      ? "key"
                          : prefix ? "prefix"
                                   : "tag",
                          key      ? key
                          : prefix ? prefix
                                   : tag,
                          "soft", soft);
    if (b != NULL && async)
        json_object_set_new(b, "async", json_true());
    if (b != NULL && local)
        json_object_set_new(b, "local", json_true());
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (body == NULL)
        return usage_error("invalid purge argument%s", "");
    int rc = call(x, "POST", "/v1/cache/purge", body, JOIN_TIMEOUT_MS, render_purge, NULL);
    free(body);
    return rc;
}

int main(int argc, char **argv)
{
    ctx_t x = {getenv("SHOAL_ADDR"), getenv("SHOAL_TOKEN"), 0};
    if (x.addr == NULL || *x.addr == 0)
        x.addr = NODECTL_DEFAULT_ADDR;
    nodectl_tls_cafile = getenv("SHOAL_CACERT");
    const char *status = NULL, *tag = NULL, *pkey = NULL, *pprefix = NULL;
    int help = 0, soft = 0, async = 0, local = 0;
    const char *pos[MAX_POS];
    int npos = 0;
    /* Options may come before or after the command (getopt_long permutes);
     * "--" ends them. */
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"addr", required_argument, NULL, 'a'},
                                             {"token", required_argument, NULL, 't'},
                                             {"status", required_argument, NULL, 's'},
                                             {"tag", required_argument, NULL, 'g'},
                                             {"key", required_argument, NULL, 'k'},
                                             {"prefix", required_argument, NULL, 'p'},
                                             {"soft", no_argument, NULL, 'S'},
                                             {"cacert", required_argument, NULL, 'c'},
                                             {"async", no_argument, NULL, 'A'},
                                             {"local", no_argument, NULL, 'L'},
                                             {NULL, 0, NULL, 0}};
    opterr = 0; /* our own messages, exit status 2 */
    int opt;
    while ((opt = getopt_long(argc, argv, ":ha:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            help = 1;
            break;
        case 'j':
            x.json_out = 1;
            break;
        case 'a':
            x.addr = optarg;
            break;
        case 't':
            x.token = optarg;
            break;
        case 's':
            status = optarg;
            break;
        case 'g':
            tag = optarg;
            break;
        case 'k':
            pkey = optarg;
            break;
        case 'p':
            pprefix = optarg;
            break;
        case 'S':
            soft = 1;
            break;
        case 'A':
            async = 1;
            break;
        case 'L':
            local = 1;
            break;
        case 'c':
            nodectl_tls_cafile = optarg;
            break;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (npos >= MAX_POS)
            return usage_error("too many arguments%s", "");
        pos[npos++] = argv[i];
    }
    if (npos == 0 && help)
        return print_help(NULL);
    if (npos == 0)
        return usage_error("no command given%s", "");
    const char *cmd = pos[0];
    if (strcmp(cmd, "help") == 0 && !(help && npos == 1)) {
        if (npos > 2)
            return usage_error("\"help\" takes one command at most%s", "");
        return print_help(npos == 2 ? pos[1] : NULL);
    }
    if (find_help(cmd) == NULL)
        return usage_error("unknown command \"%s\"", cmd);
    if (help)
        return print_help(cmd);
    if (strcmp(cmd, "cache") == 0)
        return cache_cmd(&x, pos, npos, pkey, pprefix, tag, soft, async, local);
    if ((status || tag) && strcmp(cmd, "members") != 0)
        return usage_error("--status and --tag go with \"members\"%s", "");
    if (pkey || pprefix || soft || async || local)
        return usage_error("--key, --prefix, --soft, --async and --local go with \"cache purge\"%s",
                           "");
    if (strcmp(cmd, "version") == 0) {
        if (npos != 1)
            return usage_error("\"version\" takes no argument%s", "");
        printf("nodectl %s\n", SHOAL_VERSION);
        return NODECTL_OK;
    }
    if (strcmp(cmd, "keygen") == 0) {
        if (npos != 1)
            return usage_error("\"keygen\" takes no argument%s", "");
        return keygen();
    }
    if (*x.addr == 0)
        return usage_error("empty --addr%s", "");

    if (strcmp(cmd, "members") == 0) {
        if (npos != 1)
            return usage_error("\"members\" takes no argument besides its options%s", "");
        char path[600] = "/v1/members", q[256];
        if (status) {
            if (strcmp(status, "alive") && strcmp(status, "suspect") && strcmp(status, "dead") &&
                strcmp(status, "left"))
                return usage_error("--status must be alive, suspect, dead or left, not \"%s\"",
                                   status);
            snprintf(path + strlen(path), sizeof(path) - strlen(path), "?status=%s", status);
        }
        if (tag) {
            const char *eq = strchr(tag, '=');
            if (eq == NULL || eq == tag)
                return usage_error("--tag must be KEY=VALUE, not \"%s\"", tag);
            qescape(q, sizeof(q), tag);
            snprintf(path + strlen(path), sizeof(path) - strlen(path), "%stag=%s",
                     status ? "&" : "?", q);
        }
        return call(&x, "GET", path, NULL, TIMEOUT_MS, render_members, NULL);
    }
    if (strcmp(cmd, "limits") == 0) {
        if (npos != 1)
            return usage_error("\"%s\" takes no argument", cmd);
        return call(&x, "GET", "/v1/limits", NULL, TIMEOUT_MS, render_limits, NULL);
    }
    if (strcmp(cmd, "info") == 0 || strcmp(cmd, "stats") == 0 || strcmp(cmd, "upstreams") == 0 ||
        strcmp(cmd, "leave") == 0 || strcmp(cmd, "reload") == 0 || strcmp(cmd, "monitor") == 0) {
        if (npos != 1)
            return usage_error("\"%s\" takes no argument", cmd);
        if (strcmp(cmd, "info") == 0)
            return call(&x, "GET", "/v1/info", NULL, TIMEOUT_MS, render_info, NULL);
        if (strcmp(cmd, "stats") == 0)
            return call(&x, "GET", "/v1/stats", NULL, TIMEOUT_MS, render_stats, NULL);
        if (strcmp(cmd, "upstreams") == 0)
            return call(&x, "GET", "/v1/upstreams", NULL, TIMEOUT_MS, render_upstreams, NULL);
        if (strcmp(cmd, "leave") == 0)
            return call(&x, "POST", "/v1/leave", NULL, TIMEOUT_MS, NULL,
                        "left the cluster (the node keeps serving HTTP)");
        if (strcmp(cmd, "reload") == 0)
            return call(&x, "POST", "/v1/reload", NULL, JOIN_TIMEOUT_MS, NULL, "%s");
        return monitor(&x);
    }
    if (strcmp(cmd, "join") == 0) {
        if (npos < 2)
            return usage_error("\"join\" needs at least one ADDR%s", "");
        json_t *arr = json_array();
        for (int i = 1; i < npos; i++)
            json_array_append_new(arr, json_string(pos[i]));
        json_t *b = json_pack("{s:o}", "addrs", arr);
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        if (body == NULL)
            return usage_error("invalid address argument%s", "");
        int rc = call(&x, "POST", "/v1/join", body, JOIN_TIMEOUT_MS, NULL, "join: ok");
        free(body);
        return rc;
    }
    if (strcmp(cmd, "force-leave") == 0) {
        if (npos != 2)
            return usage_error("\"force-leave\" needs exactly one NAME%s", "");
        json_t *b = json_pack("{s:s}", "name", pos[1]);
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        if (body == NULL)
            return usage_error("invalid name argument%s", "");
        int rc = call(&x, "POST", "/v1/force-leave", body, TIMEOUT_MS, NULL,
                      "force-leave: ok (the member is now left everywhere)");
        free(body);
        return rc;
    }
    /* keys / keyring */
    const char *sub = npos > 1 ? pos[1] : "list";
    if (strcmp(sub, "list") == 0) {
        if (npos > 2)
            return usage_error("\"%s list\" takes no argument", cmd);
        return call(&x, "GET", "/v1/keyring", NULL, TIMEOUT_MS, render_keyring, NULL);
    }
    if (strcmp(sub, "install") == 0 || strcmp(sub, "use") == 0 || strcmp(sub, "remove") == 0) {
        if (npos != 3)
            return usage_error("\"keys %s\" needs exactly one KEY", sub);
        return keys_op(&x, sub, pos[2]);
    }
    return usage_error("unknown keys command \"%s\": list, install, use or remove", sub);
}
