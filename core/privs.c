/* SPDX-License-Identifier: Apache-2.0 */
/* Per-thread privilege drop (see privs.h). */
#include "core/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"

#define MAX_GROUPS 64

/* Written once by the main thread before any other thread starts. */
static int active;
static uid_t the_uid;
static gid_t the_gid;
static gid_t groups[MAX_GROUPS];
static int ngroups;

int sh_privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                    size_t errlen)
{
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof(buf), &pwp) != 0 || pwp == NULL) {
        snprintf(err, errlen, "getpwnam(\"%s\") failed", user);
        return SH_EINVAL;
    }
    *uid = pw.pw_uid;
    /* nginx: without GROUP, the group named as the user */
    const char *g = group != NULL ? group : user;
    if (getgrnam_r(g, &gr, buf, sizeof(buf), &grp) != 0 || grp == NULL) {
        snprintf(err, errlen, "getgrnam(\"%s\") failed", g);
        return SH_EINVAL;
    }
    *gid = gr.gr_gid;
    return 0;
}

void sh_privs_set(uid_t uid, gid_t gid, const char *user)
{
    the_uid = uid;
    the_gid = gid;
    ngroups = MAX_GROUPS;
    if (user == NULL || getgrouplist(user, gid, groups, &ngroups) < 0) {
        groups[0] = gid; /* more than MAX_GROUPS: the primary one only */
        ngroups = 1;
    }
    active = 1;
}

int sh_privs_active(void)
{
    return active;
}

uid_t sh_privs_uid(void)
{
    return the_uid;
}

gid_t sh_privs_gid(void)
{
    return the_gid;
}

int sh_privs_drop_thread(void)
{
    if (!active)
        return 0;
    /* Order matters: groups and gid while still privileged, uid last. */
    if (syscall(SYS_setgroups, (size_t)ngroups, groups) != 0 ||
        syscall(SYS_setresgid, the_gid, the_gid, the_gid) != 0 ||
        syscall(SYS_setresuid, the_uid, the_uid, the_uid) != 0) {
        sh_log(SH_LOG_EMERG, "cannot switch a thread to uid %u gid %u: %s", (unsigned)the_uid,
               (unsigned)the_gid, strerror(errno));
        return SH_EIO;
    }
    return 0;
}
