#!/usr/bin/env python3
"""echo: a plaintext UDP echo backend for the demo and the tests."""
import socket
import sys

def main():
    host, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    if len(sys.argv) > 3:  # a file to create once bound, for whoever waits on us
        open(sys.argv[3], "w").close()
    while True:
        data, addr = s.recvfrom(65535)
        s.sendto(data, addr)

if __name__ == "__main__":
    main()
