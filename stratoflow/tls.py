"""One TLS context per thread for every HTTP client Stratoflow makes.

httpx builds a new ``SSLContext`` for each client, loading the CA bundle: about 20 ms of
CPU on a 2-core machine, paid by each Airflow API call the API server makes as a caller,
each callback and each poll of a VM's agent. The context is the same every time, so it is
made once per thread: not once per process, because httpcore sets the context's ALPN
protocols at every new TLS connection, and OpenSSL may be building another thread's
connection from that context at the same time.
"""

from __future__ import annotations

import ssl
import threading

import httpx

_per_thread = threading.local()


def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CA bundle, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``), made once in this thread."""
    context = getattr(_per_thread, "context", None)
    if context is None:
        context = _per_thread.context = httpx.create_ssl_context()
    return context
