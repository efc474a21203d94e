/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging to syslog as nginx does (`access_log syslog:...`, `error_log
 * syslog:...`): one datagram per message over UDP (default port 514) or
 * a unix datagram socket, in nginx's RFC 3164 form
 *
 *     <PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MESSAGE
 *
 * (PRI = facility * 8 + severity; HOSTNAME left out with `nohostname`),
 * which rsyslog and journald's syslog socket parse. Parameters as nginx:
 * server=ADDR[:PORT] | server=unix:PATH, facility= (default local7),
 * severity= (default info; error_log uses each message's level), tag=
 * (default "nginx", so existing rsyslog rules match), nohostname.
 *
 * Sending never blocks: the socket is non-blocking and a datagram the
 * kernel cannot take now is dropped and counted. Any thread (one
 * sendto(2) per message).
 */
#ifndef SH_SYSLOG_H
#define SH_SYSLOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct sh_syslog_s sh_syslog_t;

/* spec: what follows "syslog:" ("server=127.0.0.1:514,tag=gw"). Opens
 * the socket. 0 and *out, or SH_EINVAL with a message in err. */
int sh_syslog_open(const char *spec, sh_syslog_t **out, char *err, size_t errlen);
void sh_syslog_close(sh_syslog_t *s);
/* Send msg (no newline needed) with severity (0..7), or the configured
 * one when severity < 0. */
void sh_syslog_send(sh_syslog_t *s, int severity, const char *msg, size_t len);
/* Messages dropped because the socket was full or the send failed. */
uint64_t sh_syslog_dropped(const sh_syslog_t *s);

#endif
