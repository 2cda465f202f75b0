#!/usr/bin/python3
"""Health responder for the development cloud's fake servers.

The fake virt driver boots nothing, but Neutron gives every server a
127.1.x.y address, and Linux delivers connections to any 127/8 address to a
process listening on 0.0.0.0. This one listener therefore answers each
server's health endpoint, and knows which server was asked from the address
that was dialled.

  GET http://<server address>:PORT/<any path>   200 "ok", or 503 when marked

Control, only on 127.0.0.1 (never a server's address):

  GET    /_responder/unhealthy           the marked addresses, one a line
  PUT    /_responder/unhealthy/<address> mark a server unhealthy
  DELETE /_responder/unhealthy/<address> mark it healthy again
  DELETE /_responder/unhealthy           mark every server healthy
"""

import argparse
import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/_responder/unhealthy"
unhealthy = set()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "phoenix-devcloud-responder"

    def log_message(self, fmt, *args):  # one line a request is too much
        pass

    def answer(self, status, body=""):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def dialled(self):
        return self.connection.getsockname()[0]

    def control(self):
        if self.dialled() != "127.0.0.1" or not self.path.startswith(PREFIX):
            return False
        rest = self.path[len(PREFIX):].strip("/")
        if rest:
            try:
                rest = str(ipaddress.ip_address(rest))
            except ValueError:
                self.answer(400, "not an IP address: %s\n" % rest)
                return True
        with lock:
            if self.command == "GET" and not rest:
                self.answer(200, "".join(a + "\n" for a in sorted(unhealthy)))
            elif self.command == "PUT" and rest:
                unhealthy.add(rest)
                self.answer(204)
            elif self.command == "DELETE":
                if rest:
                    unhealthy.discard(rest)
                else:
                    unhealthy.clear()
                self.answer(204)
            else:
                self.answer(405, "method not allowed\n")
        return True

    def health(self):
        address = self.dialled()
        with lock:
            sick = address in unhealthy
        if sick:
            self.answer(503, "unhealthy %s\n" % address)
        else:
            self.answer(200, "ok %s\n" % address)

    def do_GET(self):
        self.control() or self.health()

    do_HEAD = do_GET

    def do_PUT(self):
        self.control() or self.answer(405, "method not allowed\n")

    do_DELETE = do_PUT


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    server.daemon_threads = True
    print("responder listening on 0.0.0.0:%d" % args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
