#!/usr/bin/env python3
"""meter: send one plaintext datagram from a fixed local port and print the answer (for the demo)."""
import socket
import sys
import time

def main():
    host, port = sys.argv[1].rsplit(":", 1)
    local, text = int(sys.argv[2]), sys.argv[3].encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", local))
    s.settimeout(1.0)
    deadline = time.monotonic() + 15
    sent = time.monotonic()
    s.sendto(text, (host, int(port)))
    while time.monotonic() < deadline:
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            # Plain UDP: a lost datagram is the meter's to resend, as a real meter would.
            s.sendto(text, (host, int(port)))
            continue
        print("meter %d got %r back after %.1f ms" % (local, data.decode(), (time.monotonic() - sent) * 1000))
        return 0
    print("meter %d: no answer within 15 s" % local, file=sys.stderr)
    return 1

if __name__ == "__main__":
    sys.exit(main())
