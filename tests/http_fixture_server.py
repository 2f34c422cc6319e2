#!/usr/bin/env python3
"""A local HTTP server for the download tests: serves the files under --root on 127.0.0.1.

It supports single byte ranges (Range: bytes=A- and bytes=A-B -> 206 with Content-Range; a
range past the end -> 416) and can misbehave on purpose:
  --drop-after BYTES --drop-count N   the first N responses with a body announce the full
                                      Content-Length but close the connection after BYTES bytes
  --no-range                          ignore Range headers (always 200 and the whole file)
Each request is appended to --log as "GET /path range=<Range header or -> status".
Prints "PORT <n>" on stdout once it listens (--port 0 picks a free port). Standard library only.
"""
import argparse
import http.server
import os
import sys
import threading


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--drop-after", type=int, default=0)
    parser.add_argument("--drop-count", type=int, default=0)
    parser.add_argument("--no-range", action="store_true")
    parser.add_argument("--log", default=None)
    return parser.parse_args()


class FixtureHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a dropped connection affects one response only.
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # quiet stderr; requests go to --log
        pass

    def record(self, status):
        config = self.server.config
        if config.log:
            with self.server.lock, open(config.log, "a") as log:
                log.write(f"{self.command} {self.path} range={self.headers.get('Range', '-')} {status}\n")

    def resolve(self):
        relative = self.path.split("?", 1)[0].lstrip("/")
        root = os.path.realpath(self.server.config.root)
        path = os.path.realpath(os.path.join(root, relative))
        if not path.startswith(root + os.sep) or not os.path.isfile(path):
            return None
        return path

    def parse_range(self, size):
        """(start, end) inclusive, None for no range, or "unsatisfiable"."""
        header = self.headers.get("Range")
        if not header or self.server.config.no_range or not header.startswith("bytes="):
            return None
        first, _, last = header[len("bytes="):].partition("-")
        start = int(first)
        end = int(last) if last else size - 1
        if start >= size:
            return "unsatisfiable"
        return start, min(end, size - 1)

    def take_drop(self):
        with self.server.lock:
            if self.server.drops_left > 0:
                self.server.drops_left -= 1
                return True
            return False

    def do_GET(self):
        self.respond(send_body=True)

    def do_HEAD(self):
        self.respond(send_body=False)

    def respond(self, send_body):
        path = self.resolve()
        if path is None:
            self.record(404)
            self.send_error(404, "Not Found")
            return
        size = os.path.getsize(path)
        byte_range = self.parse_range(size)
        if byte_range == "unsatisfiable":
            self.record(416)
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = byte_range if byte_range else (0, size - 1)
        length = end - start + 1 if size > 0 else 0
        status = 206 if byte_range else 200
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "none" if self.server.config.no_range else "bytes")
        if byte_range:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not send_body:
            return
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(length)
        if length > 0 and self.take_drop():
            self.wfile.write(body[: self.server.config.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the client sees the connection end mid-body
            return
        self.wfile.write(body)


def main():
    config = parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", config.port), FixtureHandler)
    server.config = config
    server.lock = threading.Lock()
    server.drops_left = config.drop_count
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
