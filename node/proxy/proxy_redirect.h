/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_redirect, proxy_cookie_domain, proxy_cookie_path: a header filter
 * on proxied responses (see proxy_redirect.c).
 */
#ifndef SH_PROXY_REDIRECT_H
#define SH_PROXY_REDIRECT_H

#include "core/conf.h"

extern sh_conf_module_t sh_proxy_redirect_module;

#endif
