#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The include-order check (docs/architecture.md, style.md): dependencies
run one way, core -> http -> proto -> cache -> cluster -> node -> cmd, so a
file may include headers of its own layer and of the layers before it,
never after; a violation is printed as FILE:LINE: message and fails the
check (exit 1). Inside node/ the same rule by sub-layer (conn and pipeline,
then proxy, then modules; node/pipeline/node.h and pipeline.h are the
layer's shared vocabulary) is only reported as "note:" lines for now: the
connection still feeds request bodies to the proxy by name (sh_proxy_body
and friends), which a body-consumer interface in the pipeline will end.
Run by ctest (layer_order); no arguments."""
import os
import re
import subprocess
import sys

ORDER = ["core", "http", "proto", "cache", "cluster", "node", "cmd"]
NODE = {"conn": 0, "pipeline": 0, "proxy": 1, "modules": 2}
SHARED = {"node/pipeline/node.h", "node/pipeline/pipeline.h"}
INC = re.compile(r'^#include "([a-z_]+)/([^"]+)"')


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = subprocess.check_output(["git", "ls-files", "*.c", "*.h"], cwd=root, text=True).split()
    bad = 0
    for f in files:
        top = f.split("/", 1)[0]
        if top not in ORDER:
            continue
        sub = f.split("/")[1] if top == "node" and f.count("/") >= 2 else None
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                m = INC.match(line)
                if not m or m.group(1) not in ORDER:
                    continue
                dep, inc = m.group(1), m.group(1) + "/" + m.group(2)
                if ORDER.index(dep) > ORDER.index(top):
                    print("%s:%d: includes \"%s\": %s comes before %s (%s)"
                          % (f, n, inc, top, dep, " -> ".join(ORDER)))
                    bad += 1
                elif top == dep == "node" and sub in NODE and inc not in SHARED:
                    dsub = inc.split("/")[1]
                    if NODE.get(dsub, 0) > NODE[sub]:
                        print("note: %s:%d: includes \"%s\": node/%s comes before node/%s"
                              % (f, n, inc, sub, dsub))
    if bad:
        print("check-layers: %d include(s) against the layer order" % bad, file=sys.stderr)
        return 1
    print("check-layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
