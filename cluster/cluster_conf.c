/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `cluster { ... }` block (main context), nginx style: a directive
 * table with generic setters, unset sentinels, and init_main that fills
 * defaults from the timing profile (lan | wan | local, memberlist's) and
 * reads the key file. Runs on the thread that loads the configuration.
 *
 *   cluster {
 *       name prod; node_name edge-1; bind 0.0.0.0:7946; advertise 10.0.0.5:7946;
 *       join 10.0.0.1:7946 dns:gossip.internal file:/etc/shoal/peers exec:"peers.sh";
 *       encrypt_key_file /etc/shoal/gossip.key;   # one key per line, first is primary
 *       profile lan; probe_interval 1s; lifeguard on; tags env=prod tier=edge;
 *       admin_listen 127.0.0.1:9901;     # or unix:/run/shoal/admin.sock
 *       admin_token_file /etc/shoal/admin.token;  # required off loopback
 *   }
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cluster/cluster_internal.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"

int sh_cluster_conf_gossips(const void *conf)
{
    const sh_cluster_conf_t *c = conf;
    return c != NULL && c->present;
}

static void *create_main(void)
{
    sh_cluster_conf_t *c = sh_new(sh_cluster_conf_t);
    c->profile = SH_CONF_UNSET;
    c->probe_interval = c->probe_timeout = c->gossip_interval = SH_CONF_UNSET_MSEC;
    c->pushpull_interval = c->gossip_to_dead = c->reconnect_interval = SH_CONF_UNSET_MSEC;
    c->join_retry_max = SH_CONF_UNSET_MSEC;
    c->indirect_checks = c->retransmit_mult = c->suspicion_mult = SH_CONF_UNSET;
    c->suspicion_max_mult = c->gossip_nodes = c->awareness_max = c->lifeguard = SH_CONF_UNSET;
    c->mtu = SH_CONF_UNSET_SIZE;
    return c;
}

static void destroy_main(void *conf)
{
    sh_cluster_conf_t *c = conf;
    if (c == NULL)
        return;
    char **strs[] = {&c->name,
                     &c->node_name,
                     &c->bind,
                     &c->advertise,
                     &c->admin_listen,
                     &c->encrypt_key_file,
                     &c->region,
                     &c->zone,
                     &c->admin_token_file,
                     &c->admin_metrics_token_file,
                     &c->admin_ssl_certificate,
                     &c->admin_ssl_certificate_key,
                     &c->key_path,
                     &c->ring_path,
                     &c->advertise_auto};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        sh_free(*strs[i]);
    for (unsigned i = 0; i < c->njoin; i++)
        sh_free(c->join[i]);
    for (unsigned i = 0; i < c->ntags; i++) {
        sh_free(c->tag_k[i]);
        sh_free(c->tag_v[i]);
    }
    sh_free((void *)c->swim.name);
    sh_free((void *)c->swim.addr);
    sh_free((void *)c->swim.meta);
    sodium_memzero(c->keys, sizeof(c->keys));
    sodium_memzero(c->token_hash, sizeof(c->token_hash));
    sodium_memzero(c->metrics_token_hash, sizeof(c->metrics_token_hash));
    sh_free(c);
}

static int set_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_cluster_conf_t *c = conf;
    if (c->present)
        return sh_conf_error(cf, "\"cluster\" directive is duplicate");
    c->present = 1;
    c->block_node = cf->node;
    return sh_conf_walk(cf, cf->node->child, SH_CTX_CLUSTER, cf->confs);
}

/* bind, advertise and a TCP admin_listen are bound or sent as they are
 * written (sh_cluster__parse_addr at start): checked here the same way,
 * so that what `shoal -t` accepts starts (host names are refused by both). */
static int addr_check(sh_conf_t *cf, const char *a)
{
    struct sockaddr_storage ss;
    if (sh_cluster__parse_addr(a, &ss) != 0)
        return sh_conf_error(
            cf, "\"%s\" is not a numeric address and port (IPv4:PORT or [IPv6]:PORT)", a);
    return 0;
}

static int set_addr(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int rc = addr_check(cf, cf->node->args[1]);
    return rc != 0 ? rc : sh_conf_set_str(cf, cmd, conf);
}

static int set_admin_listen(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_cluster_conf_t *c = conf;
    c->admin_node = cf->node;
    const char *a = cf->node->args[1];
    if (strcmp(a, "off") != 0 && strncmp(a, "unix:", 5) != 0 && a[0] != '/') {
        int rc = addr_check(cf, a);
        if (rc != 0)
            return rc;
    }
    return sh_conf_set_str(cf, cmd, conf);
}

/* admin_*_file and admin_ssl_*: the string, and where it was (errors found
 * at init point there) */
static int set_admin_str(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_cluster_conf_t *c = conf;
    size_t off = cmd->offset;
    const void **at = off == offsetof(sh_cluster_conf_t, admin_token_file) ? &c->token_node
                      : off == offsetof(sh_cluster_conf_t, admin_metrics_token_file)
                          ? &c->mtoken_node
                          : &c->cert_node;
    *at = cf->node;
    return sh_conf_set_str(cf, cmd, conf);
}

static int set_join(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_cluster_conf_t *c = conf;
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        if (c->njoin >= SH_CLUSTER_MAX_JOIN)
            return sh_conf_error(cf, "too many \"join\" addresses (max %u)", SH_CLUSTER_MAX_JOIN);
        const char *a = cf->node->args[i];
        if (strncmp(a, "dns:", 4) && strncmp(a, "file:", 5) && strncmp(a, "exec:", 5) &&
            strchr(a, ':') == NULL)
            return sh_conf_error(cf,
                                 "invalid join address \"%s\": host:port, dns:NAME[:PORT], "
                                 "file:PATH or exec:COMMAND",
                                 a);
        c->join[c->njoin++] = sh_strdup(a);
    }
    return 0;
}

static int set_tags(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_cluster_conf_t *c = conf;
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        const char *a = cf->node->args[i], *eq = strchr(a, '=');
        if (eq == NULL || eq == a)
            return sh_conf_error(cf, "invalid tag \"%s\": KEY=VALUE", a);
        if (c->ntags >= SH_CLUSTER_MAX_TAGS)
            return sh_conf_error(cf, "too many tags (max %u)", SH_CLUSTER_MAX_TAGS);
        c->tag_k[c->ntags] = sh_strndup(a, (size_t)(eq - a));
        c->tag_v[c->ntags] = sh_strdup(eq + 1);
        c->ntags++;
    }
    return 0;
}

static const sh_conf_enum_t profiles[] = {
    {"lan", SH_CLUSTER_LAN}, {"wan", SH_CLUSTER_WAN}, {"local", SH_CLUSTER_LOCAL}, {NULL, 0}};

#define OFF(f) offsetof(sh_cluster_conf_t, f)
#define IN     (SH_CTX_CLUSTER | SH_CONF_TAKE1)
/* the admin listener's directives: in cluster {} or at the main level */
#define ADM (SH_CTX_MAIN | SH_CTX_CLUSTER | SH_CONF_TAKE1)
static const sh_conf_cmd_t cmds[] = {
    {"cluster", SH_CTX_MAIN | SH_CONF_BLOCK | SH_CONF_NOARGS, set_block, 0, NULL},
    {"name", IN, sh_conf_set_str, OFF(name), NULL},
    {"node_name", IN, sh_conf_set_str, OFF(node_name), NULL},
    {"bind", IN, set_addr, OFF(bind), NULL},
    {"advertise", IN, set_addr, OFF(advertise), NULL},
    {"admin_listen", ADM, set_admin_listen, OFF(admin_listen), NULL},
    {"admin_token_file", ADM, set_admin_str, OFF(admin_token_file), NULL},
    {"admin_metrics_token_file", ADM, set_admin_str, OFF(admin_metrics_token_file), NULL},
    {"admin_ssl_certificate", ADM, set_admin_str, OFF(admin_ssl_certificate), NULL},
    {"admin_ssl_certificate_key", ADM, set_admin_str, OFF(admin_ssl_certificate_key), NULL},
    {"encrypt_key_file", IN, sh_conf_set_str, OFF(encrypt_key_file), NULL},
    {"region", IN, sh_conf_set_str, OFF(region), NULL},
    {"zone", IN, sh_conf_set_str, OFF(zone), NULL},
    {"join", SH_CTX_CLUSTER | SH_CONF_1MORE, set_join, 0, NULL},
    {"tags", SH_CTX_CLUSTER | SH_CONF_1MORE, set_tags, 0, NULL},
    {"profile", IN, sh_conf_set_enum, OFF(profile), profiles},
    {"probe_interval", IN, sh_conf_set_msec, OFF(probe_interval), NULL},
    {"probe_timeout", IN, sh_conf_set_msec, OFF(probe_timeout), NULL},
    {"gossip_interval", IN, sh_conf_set_msec, OFF(gossip_interval), NULL},
    {"pushpull_interval", IN, sh_conf_set_msec, OFF(pushpull_interval), NULL},
    {"gossip_to_dead", IN, sh_conf_set_msec, OFF(gossip_to_dead), NULL},
    {"reconnect_interval", IN, sh_conf_set_msec, OFF(reconnect_interval), NULL},
    {"join_retry_max", IN, sh_conf_set_msec, OFF(join_retry_max), NULL},
    {"indirect_checks", IN, sh_conf_set_num, OFF(indirect_checks), NULL},
    {"retransmit_mult", IN, sh_conf_set_num, OFF(retransmit_mult), NULL},
    {"suspicion_mult", IN, sh_conf_set_num, OFF(suspicion_mult), NULL},
    {"suspicion_max_mult", IN, sh_conf_set_num, OFF(suspicion_max_mult), NULL},
    {"gossip_nodes", IN, sh_conf_set_num, OFF(gossip_nodes), NULL},
    {"awareness_max", IN, sh_conf_set_num, OFF(awareness_max), NULL},
    {"lifeguard", IN, sh_conf_set_flag, OFF(lifeguard), NULL},
    {"mtu", IN, sh_conf_set_size, OFF(mtu), NULL},
    {NULL, 0, NULL, 0, NULL}};

static void resolve(sh_conf_t *cf, const char *file, char *path, size_t n)
{
    if (file[0] == '/')
        snprintf(path, n, "%s", file);
    else
        snprintf(path, n, "%s%s", cf->conf_dir ? cf->conf_dir : "", file);
}

static int unix_listen(const char *l)
{
    return strncmp(l, "unix:", 5) == 0 || l[0] == '/';
}

/* Loopback or a unix socket: the only places an admin API may go tokenless. */
static int admin_is_local(const char *l)
{
    return strcmp(l, "off") == 0 || strncmp(l, "unix:", 5) == 0 || l[0] == '/' ||
           strncmp(l, "127.", 4) == 0 || strncmp(l, "[::1]:", 6) == 0 ||
           strncmp(l, "localhost:", 10) == 0;
}

/*
 * The admin token (issue 6): one line, what `nodectl keygen` prints (any
 * printable text of 16 to 256 bytes is taken). Only its BLAKE2b-256 digest
 * is kept, so requests are compared in constant time on equal lengths.
 */
static int read_token(sh_conf_t *cf, const char *what, const char *file, uint8_t hash[32], int *has)
{
    char path[4096], line[512];
    resolve(cf, file, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return sh_conf_error(cf, "cannot read %s \"%s\"", what, path);
    char *got = fgets(line, sizeof(line), f);
    fclose(f);
    size_t len = got ? strlen(line) : 0;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
        line[--len] = 0;
    if (len < 16 || len > 256) {
        sodium_memzero(line, sizeof(line));
        return sh_conf_error(cf,
                             "%s \"%s\": the token must be one line of 16 to "
                             "256 characters (nodectl keygen makes one)",
                             what, path);
    }
    crypto_generichash(hash, 32, (const uint8_t *)line, len, NULL, 0);
    sodium_memzero(line, sizeof(line));
    *has = 1;
    return 0;
}

/*
 * The admin listener's settings (issue 17: every node has one, with or
 * without a cluster block): admin_listen (default 127.0.0.1:9901, "off"),
 * the state-changing token (required off loopback), the scrape-only
 * token, and TLS (certificate and key both or neither).
 */
static int init_admin(sh_conf_t *cf, sh_cluster_conf_t *c)
{
    int rc;
    if (c->admin_listen == NULL)
        c->admin_listen = sh_strdup("127.0.0.1:9901");
    if (c->admin_node != NULL)
        cf->node = c->admin_node; /* file:line of the cause */
    const void *at = cf->node;
    if (c->token_node != NULL)
        cf->node = c->token_node;
    if (c->admin_token_file != NULL && (rc = read_token(cf, "admin_token_file", c->admin_token_file,
                                                        c->token_hash, &c->has_token)) < 0)
        return rc;
    if (c->mtoken_node != NULL)
        cf->node = c->mtoken_node;
    if (c->admin_metrics_token_file != NULL &&
        (rc = read_token(cf, "admin_metrics_token_file", c->admin_metrics_token_file,
                         c->metrics_token_hash, &c->has_metrics_token)) < 0)
        return rc;
    c->admin_local = admin_is_local(c->admin_listen);
    cf->node = at;
    if (!c->has_token && !c->admin_local)
        return sh_conf_error(cf,
                             "admin_listen %s is not loopback or a unix socket: "
                             "\"admin_token_file\" is required",
                             c->admin_listen);
    if (c->cert_node != NULL)
        cf->node = c->cert_node;
    if ((c->admin_ssl_certificate == NULL) != (c->admin_ssl_certificate_key == NULL))
        return sh_conf_error(cf, "\"admin_ssl_certificate\" and \"admin_ssl_certificate_key\" "
                                 "go together");
    if (c->admin_ssl_certificate != NULL) {
        if (strcmp(c->admin_listen, "off") == 0 || unix_listen(c->admin_listen))
            return sh_conf_error(cf, "admin TLS needs a TCP admin_listen");
        char **files[] = {&c->admin_ssl_certificate, &c->admin_ssl_certificate_key};
        for (int i = 0; i < 2; i++) {
            char path[4096];
            resolve(cf, *files[i], path, sizeof(path));
            if (access(path, R_OK) != 0)
                return sh_conf_error(cf, "cannot read %s \"%s\"",
                                     i ? "admin_ssl_certificate_key" : "admin_ssl_certificate",
                                     path);
            sh_free(*files[i]);
            *files[i] = sh_strdup(path);
        }
    }
    return 0;
}

static int read_keys(sh_conf_t *cf, sh_cluster_conf_t *c)
{
    char path[4096];
    resolve(cf, c->encrypt_key_file, path, sizeof(path));
    c->key_path = sh_strdup(path);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return sh_conf_error(cf, "cannot read encrypt_key_file \"%s\"", path);
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        if (c->nkeys >= SH_KEYRING_MAX_KEYS) {
            fclose(f);
            return sh_conf_error(cf, "more than %u keys in \"%s\"", SH_KEYRING_MAX_KEYS, path);
        }
        if (sh_keyring_parse_key(p, c->keys[c->nkeys]) != 0) {
            fclose(f);
            return sh_conf_error(cf, "invalid key in \"%s\": 32 bytes as hex or base64", path);
        }
        c->nkeys++;
    }
    fclose(f);
    if (c->nkeys == 0)
        return sh_conf_error(cf, "no key in \"%s\"", path);
    return 0;
}

static uint8_t *encode_meta(sh_cluster_conf_t *c, size_t *len)
{
    Sh__Gossip__NodeMeta m = SH__GOSSIP__NODE_META__INIT;
    Sh__Gossip__NodeMeta__TagsEntry te[SH_CLUSTER_MAX_TAGS], *tp[SH_CLUSTER_MAX_TAGS];
    m.region = c->region ? c->region : "";
    m.zone = c->zone ? c->zone : "";
    m.version = SHOAL_VERSION;
    m.admin_addr = c->admin_listen;
    for (unsigned i = 0; i < c->ntags; i++) {
        sh__gossip__node_meta__tags_entry__init(&te[i]);
        te[i].key = c->tag_k[i];
        te[i].value = c->tag_v[i];
        tp[i] = &te[i];
    }
    m.n_tags = c->ntags;
    m.tags = tp;
    *len = sh__gossip__node_meta__get_packed_size(&m);
    uint8_t *b = sh_malloc(*len);
    sh__gossip__node_meta__pack(&m, b);
    return b;
}

/* RFC 1918 and RFC 6598 (shared address space), as memberlist's "private". */
static int is_private4(uint32_t a)
{
    return (a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 || (a >> 22) == 0x191;
}

/*
 * The address to advertise with a wildcard bind, as memberlist chooses it:
 * the first private IPv4 of an up, non-loopback interface, else the first
 * other (public) one; never link-local. Loopback only when the node has no
 * other interface up at all (one machine: nobody else to reach it). Writes
 * the address and the interface's name; 0, or -1 when nothing fits.
 */
static int pick_advertise(char *ip, size_t iplen, char *ifname, size_t iflen)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0)
        return -1;
    const struct ifaddrs *priv = NULL, *pub = NULL, *lo = NULL;
    int other_up = 0;
    for (const struct ifaddrs *i = ifa; i != NULL; i = i->ifa_next) {
        if (!(i->ifa_flags & IFF_UP) || i->ifa_addr == NULL)
            continue;
        if (!(i->ifa_flags & IFF_LOOPBACK))
            other_up = 1;
        if (i->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t a = ntohl(((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
        if ((i->ifa_flags & IFF_LOOPBACK) || (a >> 24) == 127) {
            if (lo == NULL)
                lo = i;
        } else if ((a >> 16) == 0xa9fe || a == 0) {
            continue; /* link-local */
        } else if (is_private4(a)) {
            if (priv == NULL)
                priv = i;
        } else if (pub == NULL) {
            pub = i;
        }
    }
    const struct ifaddrs *use = priv ? priv : pub ? pub : other_up ? NULL : lo;
    if (use != NULL) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)use->ifa_addr)->sin_addr, ip,
                  (socklen_t)iplen);
        snprintf(ifname, iflen, "%s", use->ifa_name);
    }
    freeifaddrs(ifa);
    return use ? 0 : -1;
}

/* `-t` (and every load) warns about a join entry that can never work. */
static void check_joins(sh_conf_t *cf, sh_cluster_conf_t *c)
{
    cf->node = c->block_node;
    for (unsigned i = 0; i < c->njoin; i++) {
        const char *j = c->join[i];
        if (strncmp(j, "file:", 5) == 0) {
            if (access(j + 5, R_OK) != 0)
                sh_conf_warn(cf,
                             "cluster: join %s: the file cannot be read now (it is read again "
                             "at each retry)",
                             j);
        } else if (strncmp(j, "exec:", 5) == 0) {
            /* the command's first word, when it is a path */
            char cmd[256];
            snprintf(cmd, sizeof(cmd), "%s", j + 5);
            cmd[strcspn(cmd, " \t")] = '\0';
            if (cmd[0] == '/' && access(cmd, X_OK) != 0)
                sh_conf_warn(cf, "cluster: join %s: %s is not an executable file", j, cmd);
        } else if (strncmp(j, "dns:", 4) != 0) {
            const char *colon = strrchr(j, ':');
            int port = colon ? atoi(colon + 1) : 0;
            struct sockaddr_storage ss;
            if (port <= 0 || port > 65535)
                sh_conf_warn(cf, "cluster: join %s can never work: the port is not 1..65535", j);
            else if (sh_cluster__parse_addr(j, &ss) == 0 &&
                     ((ss.ss_family == AF_INET &&
                       ((const struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
                      (ss.ss_family == AF_INET6 &&
                       memcmp(&((const struct sockaddr_in6 *)&ss)->sin6_addr, &in6addr_any,
                              sizeof(in6addr_any)) == 0)))
                sh_conf_warn(cf, "cluster: join %s can never work: a wildcard address is no peer",
                             j);
            else if (strncmp(j, "127.", 4) == 0 && strncmp(c->advertise, "127.", 4) != 0)
                sh_conf_warn(cf,
                             "cluster: join %s is loopback while this node advertises %s: "
                             "only a node on this machine can answer there",
                             j, c->advertise);
        }
    }
}

static int init_main(sh_conf_t *cf, void *conf)
{
    sh_cluster_conf_t *c = conf;
    int rc = init_admin(cf, c);
    if (rc < 0)
        return rc;
    if (!c->present) { /* admin only: a name for /v1/info and the events */
        char host[256] = "shoal";
        gethostname(host, sizeof(host) - 1);
        c->node_name = sh_strdup(host);
        return 0;
    }
    if (c->encrypt_key_file == NULL) {
        cf->node = c->block_node; /* file:line of the block */
        return sh_conf_error(cf, "the cluster block needs \"encrypt_key_file\" (gossip is "
                                 "always encrypted)");
    }
    rc = read_keys(cf, c);
    if (rc < 0)
        return rc;
    if (c->node_name == NULL) {
        char host[256] = "shoal";
        gethostname(host, sizeof(host) - 1);
        c->node_name = sh_strdup(host);
    }
    if (!sh_wire_valid_name(c->node_name, SH_WIRE_MAX_NAME))
        return sh_conf_error(cf, "invalid node_name");
    /* The persisted keyring (keysync.h), beside the key file and named
     * after the node, so nodes sharing a key file keep their own. */
    size_t rl = strlen(c->key_path) + strlen(c->node_name) + sizeof("..keyring");
    c->ring_path = sh_malloc(rl);
    snprintf(c->ring_path, rl, "%s.%s.keyring", c->key_path, c->node_name);
    if (c->bind == NULL)
        c->bind = sh_strdup("0.0.0.0:7946");
    if (c->advertise == NULL) {
        const char *port = strncmp(c->bind, "0.0.0.0:", 8) == 0 ? c->bind + 8
                           : strncmp(c->bind, "[::]:", 5) == 0  ? c->bind + 5
                                                                : NULL;
        if (port == NULL) {
            c->advertise = sh_strdup(c->bind);
        } else {
            char ip[INET_ADDRSTRLEN] = "", ifn[IF_NAMESIZE + 1] = "", buf[96];
            if (pick_advertise(ip, sizeof(ip), ifn, sizeof(ifn)) != 0) {
                cf->node = c->block_node;
                return sh_conf_error(cf,
                                     "cluster: bind %s is a wildcard and no up interface has an "
                                     "IPv4 address other machines could reach: set \"advertise\"",
                                     c->bind);
            }
            snprintf(buf, sizeof(buf), "%s:%s", ip, port);
            c->advertise = sh_strdup(buf);
            snprintf(buf, sizeof(buf), "%s", ifn);
            c->advertise_auto = sh_strdup(buf);
        }
    }
    check_joins(cf, c);
    SH_CONF_MERGE(c->profile, SH_CONF_UNSET, SH_CLUSTER_LAN);
    sh_swim_conf_t *s = &c->swim;
    memset(s, 0, sizeof(*s));
    if (c->profile == SH_CLUSTER_WAN)
        sh_swim_conf_wan(s);
    else if (c->profile == SH_CLUSTER_LOCAL)
        sh_swim_conf_local(s);
    else
        sh_swim_conf_lan(s);
    SH_CONF_MERGE_MSEC(c->probe_interval, SH_CONF_UNSET_MSEC, s->probe_interval_ms);
    SH_CONF_MERGE_MSEC(c->probe_timeout, SH_CONF_UNSET_MSEC, s->probe_timeout_ms);
    SH_CONF_MERGE_MSEC(c->gossip_interval, SH_CONF_UNSET_MSEC, s->gossip_interval_ms);
    SH_CONF_MERGE_MSEC(c->pushpull_interval, SH_CONF_UNSET_MSEC, s->pushpull_interval_ms);
    SH_CONF_MERGE_MSEC(c->gossip_to_dead, SH_CONF_UNSET_MSEC, s->gossip_to_dead_ms);
    SH_CONF_MERGE_MSEC(c->reconnect_interval, SH_CONF_UNSET_MSEC, s->reconnect_interval_ms);
    SH_CONF_MERGE_MSEC(c->join_retry_max, SH_CONF_UNSET_MSEC, 30000);
    SH_CONF_MERGE(c->indirect_checks, SH_CONF_UNSET, (int)s->indirect_checks);
    SH_CONF_MERGE(c->retransmit_mult, SH_CONF_UNSET, (int)s->retransmit_mult);
    SH_CONF_MERGE(c->suspicion_mult, SH_CONF_UNSET, (int)s->suspicion_mult);
    SH_CONF_MERGE(c->suspicion_max_mult, SH_CONF_UNSET, (int)s->suspicion_max_mult);
    SH_CONF_MERGE(c->gossip_nodes, SH_CONF_UNSET, (int)s->gossip_nodes);
    SH_CONF_MERGE(c->awareness_max, SH_CONF_UNSET, (int)s->awareness_max);
    SH_CONF_MERGE(c->lifeguard, SH_CONF_UNSET, 1);
    SH_CONF_MERGE_SIZE(c->mtu, SH_CONF_UNSET_SIZE, s->mtu);
    if (c->probe_timeout >= c->probe_interval)
        return sh_conf_error(cf, "probe_timeout must be shorter than probe_interval");
    if (c->mtu < 512 || c->mtu > 65000)
        return sh_conf_error(cf, "mtu must be within 512..65000");
    s->probe_interval_ms = c->probe_interval;
    s->probe_timeout_ms = c->probe_timeout;
    s->gossip_interval_ms = c->gossip_interval;
    s->pushpull_interval_ms = c->pushpull_interval;
    s->gossip_to_dead_ms = c->gossip_to_dead;
    s->reconnect_interval_ms = c->reconnect_interval;
    s->indirect_checks = (unsigned)c->indirect_checks;
    s->retransmit_mult = (unsigned)c->retransmit_mult;
    s->suspicion_mult = (unsigned)c->suspicion_mult;
    s->suspicion_max_mult = (unsigned)c->suspicion_max_mult;
    s->gossip_nodes = (unsigned)c->gossip_nodes;
    s->awareness_max = (unsigned)c->awareness_max;
    s->lifeguard = c->lifeguard;
    s->mtu = c->mtu;
    s->name = sh_strdup(c->node_name);
    s->addr = sh_strdup(c->advertise);
    s->meta = encode_meta(c, &s->meta_len);
    return 0;
}

sh_conf_module_t sh_cluster_module = {
    .name = "cluster",
    .cmds = cmds,
    .create_main = create_main,
    .init_main = init_main,
    .destroy_main = destroy_main,
};
