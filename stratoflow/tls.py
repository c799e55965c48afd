"""One TLS context for every HTTP client Stratoflow makes.

httpx builds a new ``SSLContext`` for each client, loading the CA bundle: about 20 ms of
CPU on a 2-core machine, paid by each Airflow API call the API server makes as a caller,
each callback and each poll of a VM's agent. The context is the same every time, and one
``SSLContext`` may serve any number of connections in any number of threads, so it is
made once per process.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CA bundle, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``), made once."""
    return httpx.create_ssl_context()
