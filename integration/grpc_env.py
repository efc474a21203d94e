# SPDX-License-Identifier: Apache-2.0
"""Imported first by the tests that use grpcio: Debian's python3-grpcio lives
in the system interpreter's path, so under another interpreter (a pyenv
python3 on PATH) the test runs itself again with /usr/bin/python3. A test
still checks `import grpc` itself and reports skipped when it is missing."""

import os
import sys

try:
    import grpc  # noqa: F401
except ImportError:
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)


def ident(b):
    """grpcio's (de)serializer for raw bytes."""
    return b


def require_grpc():
    """The grpc module; without it the test reports itself skipped."""
    try:
        import grpc
    except ImportError:
        print("SKIP - python3-grpcio is not installed")
        sys.exit(77)
    return grpc


def backend(t, name, *args):
    """A grpc_backend.py server of test t (args: more of its options, e.g.
    TLS), once it is ready: (its process, its port)."""
    import shoal_harness as sh
    port = t.port()
    d = t._subdir("grpc-" + name)
    p = t._spawn(name, [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "grpc_backend.py"),
                        "--port", str(port)] + list(args), d)
    sh.wait_for(lambda: "ready" in p.stdout().split() and sh.port_accepts(port), 20 * t.slow,
                "gRPC backend %s" % name)
    return p, port
