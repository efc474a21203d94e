/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default configuration, used when no -c is given and no
 * configuration file exists at the default paths: one gateway on
 * 127.0.0.1:8080 in front of two demo backends on 127.0.0.1:9001 and
 * :9002 (what `scripts/demo.sh` starts). README.md documents it.
 */
#include "cmd/shoal/modules.h"

const char sh_default_conf[] =
    "# shoal built-in default configuration\n"
    "worker_processes 1;\n"
    "events { worker_connections 1024; }\n"
    "http {\n"
    "    upstream demo {\n"
    "        server 127.0.0.1:9001;\n"
    "        server 127.0.0.1:9002;\n"
    "        keepalive 16;\n"
    "    }\n"
    "    server {\n"
    "        listen 127.0.0.1:8080;\n"
    "        location / {\n"
    "            proxy_pass http://demo;\n"
    "            proxy_set_header Host $host;\n"
    "            proxy_set_header X-Real-IP $remote_addr;\n"
    "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
    "        }\n"
    "        location = /shoal/hello {\n"
    "            return 200 \"hello from shoal\\n\";\n"
    "        }\n"
    "    }\n"
    "}\n";
