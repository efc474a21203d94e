/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP status texts (part of the HTTP codec layer, http/). Pure, any thread.
 */
#ifndef SH_HTTP_STATUS_H
#define SH_HTTP_STATUS_H

/* The reason phrase for status ("Not Found"); "Unknown" for a code
 * without one. Static, never NULL. */
const char *sh_http_status_text(int status);

#endif
