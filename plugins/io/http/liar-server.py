# SPDX-License-Identifier: MIT
"""A web server that promises byte ranges and then breaks the promise.

Usage: liar-server.py PORT FILE COUNT_FILE

HEAD answers 200 with the size of FILE and "Accept-Ranges: bytes".  A GET
misbehaves by the first element of its path:
  /whole/...    200 and the whole file, ignoring Range; the number of bytes
                it managed to send before the client hung up is appended
                to COUNT_FILE
  /shifted/...  206 for another range than the one asked for
  /short/...    206, the right Content-Range, half the bytes
  /long/...     206, the right Content-Range, 4096 bytes more than asked
  /resized/...  206 with a Content-Range total other than the file size
  /garbled/...  206 with a Content-Range whose first byte overflows 64 bits
test-http.sh checks that the http plugin refuses each of them.
"""
import http.server
import os
import re
import sys

PATH, COUNT = sys.argv[2], sys.argv[3]
SIZE = os.path.getsize(PATH)


class Liar(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def send_whole_file(self):
        self.do_HEAD()
        sent = 0
        with open(PATH, "rb") as f:
            try:
                while chunk := f.read(65536):
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
        with open(COUNT, "a") as c:
            c.write(f"{sent}\n")

    def do_GET(self):
        mode = self.path.split("/")[1]
        asked = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if mode == "whole" or not asked:
            self.send_whole_file()
            return
        first, last = int(asked[1]), int(asked[2])
        extra = 4096 if mode == "long" else 0
        with open(PATH, "rb") as f:
            f.seek(first)
            body = f.read(last - first + 1 + extra)
        total = SIZE + 1 if mode == "resized" else SIZE
        if mode == "shifted":
            first, last = first + 512, last + 512
        if mode == "short":
            body = body[: len(body) // 2]
        content_range = f"bytes {first}-{last}/{total}"
        if mode == "garbled":
            content_range = f"bytes {first + 2**64}-{last}/{total}"
        self.send_response(206)
        self.send_header("Content-Range", content_range)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Liar).serve_forever()
