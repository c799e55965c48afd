"""A receiver of deployment callbacks (INDIGO's ``callback`` URL), over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CallbackReceiver:
    """An HTTP endpoint that records every POST; it answers 500 to the first one."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, dict]] = []  # (the answer given, the body)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = 500 if not receiver.posts else 200
                receiver.posts.append((code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/callback"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def accepted(self) -> list[str]:
        return [body["status"] for code, body in self.posts if code == 200]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
