#!/usr/bin/env python3
"""handshake_injection: an open finding, measured by hand (not a test).

DTLS 1.2 handshake messages are unauthenticated until Finished, and GnuTLS
3.7.9 takes the first message of each sequence number it gets. An
off-path attacker who knows a handshake's addresses and wins the race with
the real flight (sprays during the handshake) breaks it with one forged
datagram:

  gateway  forged HelloVerifyRequest (seq 0, a made-up cookie) before the
           real one: GnuTLS answers with that cookie, the terminator
           answers each retry with a new HelloVerifyRequest, GnuTLS discards
           those (records_discarded): stalled until handshake_timeout_s
           (120 s by default), then back-off.
  gateway  forged ServerHello-seq-1 garbage, an unknown handshake type, a
           fragment past a message's end: fatal, back-off (about 3 s).
  terminator  a handshake message of the wrong type with the next client
           sequence number (ServerHelloDone, seq 2): fatal there; the
           gateway's last flight then finds no handshake and it waits
           handshake_timeout_s.

Prints, for each shape, when the meter's first request was answered.
Runs itself in a network namespace (unshare -rn).  Usage, from the build
directory with PSKTUND, PSKTUNCTL and PLUGIN_BUILD_DIR set as for make check:

    python3 ../tests/integration/handshake_injection.py
"""

import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_spoofed as sp  # noqa: E402

HS_TIMEOUT_S = 30      # instead of 120, to keep a run short


def hs(msg_type, seq, body):
    n = len(body)
    return bytes([msg_type]) + n.to_bytes(3, 'big') + struct.pack('!H', seq) + bytes(3) + \
        n.to_bytes(3, 'big') + body


def record(ct, seq, body):
    return bytes([ct, 0xfe, 0xfd, 0, 0]) + seq.to_bytes(6, 'big') + struct.pack('!H', len(body)) + body


SHAPES = [
    ('gateway', 'HelloVerifyRequest, made-up cookie',
     lambda: record(22, 0, hs(3, 0, b'\xfe\xff\x20' + os.urandom(32)))),
    ('gateway', 'ServerHello (seq 1) of garbage', lambda: record(22, 1, hs(2, 1, os.urandom(40)))),
    ('gateway', 'handshake type 99 (seq 1)', lambda: record(22, 1, hs(99, 1, os.urandom(10)))),
    ('terminator', 'ServerHelloDone as seq 2', lambda: record(22, 2, hs(14, 2, b''))),
]


def run(shape):
    where, name, make = shape
    env = h.Env(name)
    try:
        raw = sp.raw_socket()
        env.defer(raw.close)
        echo = env.echo(b'E:')
        term = h.terminator(env, sp.KEYS, echo.addr,
                            dtls={'retransmit_ms': 1000, 'handshake_timeout_s': HS_TIMEOUT_S})
        link = sp.BadLink(listen=(h.LO, 0), upstream=(h.LO, term.port), delay_ms=(300, 300))
        env.defer(link.stop)
        meter = env.meter()
        gw = h.gateway(env, sp.KEYS, [('meter-A', meter.source)], '%s:%d' % (h.LO, link.port),
                       dtls={'retransmit_ms': 1000, 'handshake_timeout_s': HS_TIMEOUT_S})
        t0 = time.monotonic()
        meter.send(b'one', gw.addr)
        if where == 'gateway':
            socks = h.wait_until(lambda: sp.connected_udp_sockets((h.LO, link.port)), interval=0.002)
            sp.udp(raw, (h.LO, link.port), socks[0], make())
        else:
            h.wait_until(lambda: term.stats()['handshakes_started'] == 1, interval=0.002)
            socks = sp.connected_udp_sockets((h.LO, term.port))
            sp.udp(raw, socks[0], (h.LO, term.port), make())
        try:
            meter.recv(timeout=HS_TIMEOUT_S + 30)
            took = '%.1f s' % (time.monotonic() - t0)
        except h.Fail:
            took = 'never'
        print('forged at the %-10s %-36s first answer after %-8s (gateway handshakes_failed %d, '
              'records_discarded %d; terminator handshakes_failed %d)' % (
                  where, name, took, gw.stats()['handshakes_failed'], gw.stats()['records_discarded'],
                  term.stats()['handshakes_failed']), flush=True)
    finally:
        env.close()


if __name__ == '__main__':
    sp.in_own_netns()
    print('without a forgery the first answer takes about 2.5 s (3 round trips of 0.6 s)')
    for s in SHAPES:
        run(s)
