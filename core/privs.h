/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dropping privileges the way nginx does, with threads instead of
 * processes (issue 16, `user USER [GROUP]`). nginx's master keeps root (to
 * reopen logs, re-read root-only keys and bind on reload) and its workers
 * switch to the user. Shoal's "master" is the main thread and its workers
 * are threads, so the switch is per thread: on Linux credentials belong to
 * each task, and the raw setresuid/setresgid/setgroups system calls (not
 * glibc's, which apply to every thread) change only the caller's. Every
 * thread that touches the network (workers, the cluster thread, the OCSP
 * fetcher, libuv's pool started from those) calls sh_privs_drop_thread()
 * first; threads they create inherit the dropped credentials.
 *
 * sh_privs_set() is called once by the main thread before any thread
 * starts; the setting is read-only afterwards.
 */
#ifndef SH_PRIVS_H
#define SH_PRIVS_H

#include <sys/types.h>

/* Resolve USER and GROUP (NULL: nginx's default, the group named as the
 * user) into ids. 0, or SH_EINVAL with "getpwnam(\"x\") failed" (or
 * getgrnam) in err (errlen bytes). */
int sh_privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
                    size_t errlen);

/* Make every later sh_privs_drop_thread() switch to uid:gid (with the
 * user's supplementary groups). Main thread, before threads start. */
void sh_privs_set(uid_t uid, gid_t gid, const char *user);

/* 1 when sh_privs_set() was called (the node drops privileges). */
int sh_privs_active(void);
uid_t sh_privs_uid(void);
gid_t sh_privs_gid(void);

/* Switch the calling thread to the configured user; a no-op when none is
 * set. 0, or a negative SH_E* code (logged). Any thread, at its start. */
int sh_privs_drop_thread(void);

#endif
