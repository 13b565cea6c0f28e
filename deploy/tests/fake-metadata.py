#!/usr/bin/env python3
"""A stand-in for the GCE metadata server and a download host, on 127.0.0.1 only.

  GET /computeMetadata/v1/instance/attributes/NAME  -> the file ATTR_DIR/NAME, 404 when absent;
                                                       403 without `Metadata-Flavor: Google`,
                                                       as the real server does.
  GET /files/NAME                                   -> the file FILES_DIR/NAME (agent binaries).
  GET /git/PATH                                     -> GIT_ROOT/PATH: bare repositories over
                                                       git's "dumb" HTTP protocol (after
                                                       `git update-server-info`), a remote that
                                                       belongs to no user of the VM, like GitHub.

Every request is appended to LOG as "METHOD PATH STATUS". The chosen port is written to
PORT_FILE once the socket listens.
Usage: fake-metadata.py ATTR_DIR FILES_DIR GIT_ROOT LOG PORT_FILE
"""
import http.server
import os
import sys

ATTR_PREFIX = "/computeMetadata/v1/instance/attributes/"
FILES_PREFIX = "/files/"
GIT_PREFIX = "/git/"


def main() -> None:
    attr_dir, files_dir, git_root, log_path, port_file = sys.argv[1:6]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            status, path = self.route()
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"GET {self.path} {status}\n")
            if path is None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with open(path, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def route(self) -> tuple[int, str | None]:
            path = self.path.split("?", 1)[0]
            if path.startswith(ATTR_PREFIX):
                if self.headers.get("Metadata-Flavor") != "Google":
                    return 403, None
                return self.existing(attr_dir, path[len(ATTR_PREFIX):], nested=False)
            if path.startswith(FILES_PREFIX):
                return self.existing(files_dir, path[len(FILES_PREFIX):], nested=False)
            if path.startswith(GIT_PREFIX):
                return self.existing(git_root, path[len(GIT_PREFIX):], nested=True)
            return 404, None

        @staticmethod
        def existing(base: str, name: str, nested: bool) -> tuple[int, str | None]:
            parts = name.split("/")
            if (not nested and len(parts) > 1) or any(p in ("", ".", "..") for p in parts):
                return 404, None
            path = os.path.join(base, *parts)
            return (200, path) if os.path.isfile(path) else (404, None)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
