#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A delay relay between two bridges: the WAN between two regions.

This machine's kernel has no netem, so delay is made here: two TAP
devices, one enslaved to each region's bridge, and this process copies
every Ethernet frame (ARP, UDP gossip, TCP push-pull and HTTP alike) from
one to the other after holding it DELAY ms (plus up to JITTER ms, kept in
order per direction so TCP sees no reordering). Loss is not made here: the
test drops with nftables (`numgen random mod 100 < N drop`) on the bridge
forward path, as the brief asks.

    wan_relay.py TAP_A TAP_B DELAY_MS [JITTER_MS]

prints "ready" once both TAP devices exist (the caller then enslaves them
to the bridges and sets them up); runs until killed (SIGTERM), and the TAP
devices vanish with it. Counters on SIGUSR1 to stderr.
"""
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main():
    a_name, b_name, delay = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 1000.0
    jitter = float(sys.argv[4]) / 1000.0 if len(sys.argv) > 4 else 0.0
    a, b = open_tap(a_name), open_tap(b_name)
    other = {a: b, b: a}
    last_due = {a: 0.0, b: 0.0}  # per direction: release times never go backwards
    heap = []                    # (due, seq, out_fd, frame)
    seq = 0
    stats = {"frames": 0, "bytes": 0, "dropped_full": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: print("relay %s" % stats, file=sys.stderr, flush=True))
    print("ready", flush=True)
    while not stop:
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, out, frame = heapq.heappop(heap)
            try:
                os.write(out, frame)
            except OSError:
                pass  # the device is not up yet, or its queue is full: a lost frame
        timeout = max(0.0, heap[0][0] - now) if heap else 0.5
        try:
            ready, _, _ = select.select([a, b], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            for _ in range(64):
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if len(heap) > 100000:
                    stats["dropped_full"] += 1
                    continue
                due = now + delay + (random.random() * jitter if jitter else 0.0)
                due = max(due, last_due[fd])
                last_due[fd] = due
                seq += 1
                heapq.heappush(heap, (due, seq, other[fd], frame))
                stats["frames"] += 1
                stats["bytes"] += len(frame)


if __name__ == "__main__":
    main()
