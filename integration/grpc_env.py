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
