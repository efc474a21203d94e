/* SPDX-License-Identifier: Apache-2.0 */
/* nodectl limits: the table of GET /v1/limits (issue 13), per zone its
 * configured rate, the share this node's side admits now, this node's and
 * the cluster's admitted rates, degraded or not, and the hot keys. */
#include <stdio.h>

#include "nodectl.h"

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double num(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

int nodectl_render_limits(FILE *out, const json_t *j, int color)
{
    const json_t *zones = json_object_get(j, "zones");
    if (!json_is_array(zones))
        return -1;
    if (json_array_size(zones) == 0) {
        fprintf(out, "no global limit_req zone on this node\n");
        return 0;
    }
    fprintf(out, "%-16s %10s %16s %10s %10s %8s  %s\n", "ZONE", "RATE/S", "ADMITS NOW/S",
            "CLUSTER/S", "NODE/S", "SHARE", "STATE");
    size_t i;
    const json_t *z;
    json_array_foreach(zones, i, z)
    {
        int deg = json_is_true(json_object_get(z, "degraded"));
        char now[32];
        snprintf(now, sizeof(now), "%.0f (%.0f%%)", num(z, "rate_now"), num(z, "share") * 100);
        fprintf(out, "%-16s %10.0f %16s %10.0f %10.0f %7.0f%%  ", str(z, "zone"), num(z, "rate"),
                now, num(z, "cluster_estimate_per_s"), num(z, "admitted_per_s"),
                num(z, "node_share") * 100);
        if (deg)
            fprintf(out, "%sdegraded%s: %s (hears %d of %d members)\n", color ? "\033[33m" : "",
                    color ? "\033[0m" : "", str(z, "reason"), (int)num(z, "heard"),
                    (int)num(z, "members"));
        else
            fprintf(out, "global (hears %d of %d members)\n", (int)num(z, "heard"),
                    (int)num(z, "members"));
        const json_t *hot = json_object_get(z, "hot_keys");
        size_t k;
        const json_t *h;
        json_array_foreach(hot, k, h)
        {
            const char *key = str(h, "key");
            fprintf(out, "  hot key %s%s%s%s  %.0f/s here  owner %s\n", key[0] ? "\"" : "", key,
                    key[0] ? "\" " : "", str(h, "id"), num(h, "admitted_per_s"), str(h, "owner"));
        }
    }
    const json_t *ch = json_object_get(j, "channel");
    if (json_is_object(ch))
        fprintf(out,
                "channel: %.0f messages / %.0f bytes sent, %.0f / %.0f received, "
                "%.0f owner timeouts, %.0f malformed\n",
                num(ch, "messages_sent"), num(ch, "bytes_sent"), num(ch, "messages_received"),
                num(ch, "bytes_received"), num(ch, "owner_timeouts"), num(ch, "malformed"));
    return 0;
}
