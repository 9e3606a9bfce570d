# Run as a child process: imports only the standard library and dnspython.
"""The servers of test_http_eyeballs_curl.py: a DNS server on DNS_ADDR port 53 (the
endpoint's resolver reads /etc/resolv.conf, which only gives port 53) answering every
name with A 127.0.0.1 and AAAA ::1, and a web server on ADDR (an ephemeral port, printed
first) answering every request 200 `hi`:

    python eyeballs_servers.py ADDR
"""

from __future__ import annotations

import http.server
import socket
import sys
import threading

import dns.message
import dns.rrset

DNS_ADDR = "127.0.0.54"


def dns_server(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            q = dns.message.from_wire(data)
        except Exception:  # (not a query: nothing to answer)
            continue
        r = dns.message.make_response(q)
        question = q.question[0]
        if question.rdtype == 1:
            r.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
        elif question.rdtype == 28:
            r.answer.append(dns.rrset.from_text(question.name, 60, "IN", "AAAA", "::1"))
        sock.sendto(r.to_wire(), peer)


class Hi(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"hi\n")

    def log_message(self, *args: object) -> None:
        pass


class Server6(http.server.HTTPServer):
    address_family = socket.AF_INET6


def main(addr: str) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((DNS_ADDR, 53))
    threading.Thread(target=dns_server, args=(udp,), daemon=True).start()
    server = (Server6 if ":" in addr else http.server.HTTPServer)((addr, 0), Hi)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
