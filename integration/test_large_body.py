#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: bodies are streamed, never held in memory.

200 MiB up (Content-Length and chunked) and 200 MiB down (Content-Length and
chunked) through one node, plus a 100 MiB download by a rate-limited client
(the node must stop reading the backend while the client is slow, not buffer
what it cannot send). Bodies are generated and hashed piece by piece on the
test side too. The node's peak RSS (VmHWM from /proc/PID/status) may grow by
at most 64 MiB over its baseline: a third of one body. Transfer times are
printed, not asserted.

Under ASan the quarantine holds freed buffers (and spreads them over size
classes) and looks like growth (measured: ~70 MiB with a 16 MiB quarantine),
so this node runs with quarantine_size_mb=0 appended to ASAN_OPTIONS; the
other tests keep use-after-free detection."""

import json
import os
import time

import shoal_harness as sh

MiB = 1 << 20
SIZE = 200 * MiB
GROWTH_LIMIT_KB = 64 * 1024


def main(t):
    b1 = t.backend("b1")
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=0"}
    node = t.shoal(f"""
        events {{ }}
        http {{
            client_max_body_size 2g;
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://be; }}
            }}
        }}""", env=env)

    r = t.curl(node.url("/"))
    t.require(r.status == 200, "node proxies (warm-up GET /)", r)
    rss0, hwm0 = node.proc.memory_kb()
    t.log("baseline: VmRSS %d kB, VmHWM %d kB" % (rss0, hwm0))
    want = sh.pattern_sha256(SIZE)

    def hwm_check(what):
        rss, hwm = node.proc.memory_kb()
        t.check(hwm - hwm0 <= GROWTH_LIMIT_KB,
                "after %s: VmHWM %d kB, growth %d kB <= %d kB (VmRSS %d kB)"
                % (what, hwm, hwm - hwm0, GROWTH_LIMIT_KB, rss))

    # Uploads.
    for chunked in (False, True):
        what = "200 MiB upload (%s)" % ("chunked" if chunked else "Content-Length")
        t0 = time.monotonic()
        status, _, _, _, body = sh.http_stream(node.port, "POST", "/echo", sh.pattern_pieces(SIZE),
                                               content_length=SIZE, chunked=chunked, timeout=300)
        dt = time.monotonic() - t0
        ok = status == 200
        e = json.loads(body) if ok else None
        t.check(ok and e["body_len"] == SIZE and e["body_sha256"] == want,
                "%s: backend got every byte (%.1f s, %.0f MiB/s)" % (what, dt, SIZE / MiB / dt),
                (status, e if e else body))
        hwm_check(what)

    # Downloads.
    for chunked in (False, True):
        what = "200 MiB download (%s)" % ("chunked" if chunked else "Content-Length")
        t0 = time.monotonic()
        r = t.curl(node.url("/stream?bytes=%d%s" % (SIZE, "&chunked=1" if chunked else "")),
                   sink="sha256", timeout=300)
        dt = time.monotonic() - t0
        t.check(r.rc == 0 and r.status == 200 and r.body_len == SIZE and r.sha256 == want,
                "%s: client got every byte (%.1f s, %.0f MiB/s)" % (what, dt, SIZE / MiB / dt), r)
        hwm_check(what)

    # A slow client: the node must apply backpressure to the backend.
    n = 100 * MiB
    t0 = time.monotonic()
    r = t.curl(node.url("/stream?bytes=%d" % n), "--limit-rate", "40M", sink="sha256", timeout=300)
    dt = time.monotonic() - t0
    t.check(r.rc == 0 and r.body_len == n and r.sha256 == sh.pattern_sha256(n),
            "100 MiB to a client limited to 40 MB/s arrives intact (%.1f s)" % dt, r)
    hwm_check("the rate-limited download")

    r = t.curl(node.url("/"))
    t.check(r.status == 200, "node still serves afterwards", r)


if __name__ == "__main__":
    sh.run(main)
