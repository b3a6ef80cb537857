#!/usr/bin/env python3
"""Spoofed sources: what an off-path attacker who knows a session's
addresses can send, forged with a raw socket in a network namespace of the
test's own (`unshare -rn`, only `lo` up; exit 77 where namespaces or raw
sockets are not allowed).

  * An ICMP port unreachable naming the gateway's session socket and the
    terminator (what the terminator's host would send if nobody listened
    there), at an idle established session: the kernel hands it to the
    connected socket as ECONNREFUSED.  It is as unauthenticated as the
    terminator's plaintext "lost session" alert, so it is believed only
    while an uplink record waits for its answer: at an idle session it
    changes nothing (no rehandshake, the same socket, the next request
    answered in that session).
  * A plaintext (epoch 0) fatal alert during a handshake, at either end:
    the gateway's session socket from the terminator's address, the
    terminator from the gateway's.  GnuTLS ends a handshake on any alert,
    so one forged 15-byte datagram cost a gateway a failed handshake and
    its back-off, and a terminator's peer its whole handshake_timeout_s
    (120 s by default) before it tried again.  Now it is discarded and
    counted (records_discarded) and the handshake completes: the meter's
    first request is answered in the first handshake.  The link between
    the ends (badlink.py) delays each datagram 300 ms, so the handshake is
    still running when the forgery arrives.
  * The same with a plaintext RFC 6520 heartbeat (3 bytes of body): GnuTLS,
    heartbeats enabled (always at the terminator, with path_timeout_s at the
    gateway), ended the handshake on it (GNUTLS_E_UNEXPECTED_PACKET).  A
    heartbeat belongs to an authenticated epoch only: discarded, counted.

Exit 0 passed, 1 failed, 77 skipped."""

import os
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from badlink import BadLink  # noqa: E402

NS_MARK = 'PSKTUN_TEST_IN_NETNS'


def in_own_netns():
    """Run this file again inside a new user+network namespace, once."""
    if os.environ.get(NS_MARK):
        subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
        return
    env = dict(os.environ, **{NS_MARK: '1'})
    try:
        r = subprocess.run(['unshare', '-rn', sys.executable] + sys.argv, env=env)
    except FileNotFoundError:
        print('SKIP: unshare not installed')
        sys.exit(h.SKIP)
    if r.returncode not in (0, 1, h.SKIP):
        print('SKIP: cannot run in a network namespace of our own (unshare -rn: exit %d)' % r.returncode)
        sys.exit(h.SKIP)
    sys.exit(r.returncode)


def raw_socket():
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError as e:
        raise h.Skip('no raw sockets here: %s' % e)


def checksum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def ipv4(src, dst, proto, payload):
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def icmp_port_unreachable(raw, local, remote, from_ip):
    """ICMP 3/3 to `local`, quoting a datagram local -> remote."""
    quoted = ipv4(local[0], remote[0], socket.IPPROTO_UDP,
                  struct.pack('!HHHH', local[1], remote[1], 8 + 30, 0) + bytes(30))[:28]
    body = struct.pack('!BBHI', 3, 3, 0, 0) + quoted
    body = body[:2] + struct.pack('!H', checksum(body)) + body[4:]
    raw.sendto(ipv4(from_ip, local[0], socket.IPPROTO_ICMP, body), (local[0], 0))


def udp(raw, src, dst, payload):
    """A UDP datagram src -> dst ((ip, port) each), from any source."""
    raw.sendto(ipv4(src[0], dst[0], socket.IPPROTO_UDP,
                    struct.pack('!HHHH', src[1], dst[1], 8 + len(payload), 0) + payload), (dst[0], 0))


# epoch 0, sequence number 0, fatal handshake_failure
FATAL_ALERT = bytes([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 40])
# A plaintext RFC 6520 heartbeat response, 3 bytes of body (no payload, no
# padding): GnuTLS, heartbeats enabled, ends a handshake on it (unexpected message).
FORGED_HEARTBEAT = bytes([24, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 3, 2, 0, 1])


def connected_udp_sockets(remote):
    """Local (ip, port) of every UDP socket connected to `remote`, from /proc."""
    out = []
    with open('/proc/net/udp') as f:
        next(f)
        for line in f:
            fields = line.split()

            def dec(x):
                a, p = x.split(':')
                return socket.inet_ntoa(struct.pack('<I', int(a, 16))), int(p, 16)
            if dec(fields[2]) == remote:
                out.append(dec(fields[1]))
    return out


KEYS = {'meter-A': os.urandom(16)}
COUNTERS = ('handshakes_started', 'handshakes_completed', 'rehandshakes', 'sessions')


def test_a_forged_icmp_unreachable_at_an_idle_session_changes_nothing(env):
    raw = raw_socket()
    env.defer(raw.close)
    echo = env.echo(b'E:')
    term = h.terminator(env, KEYS, echo.addr)
    meter = env.meter()
    gw = h.gateway(env, KEYS, [('meter-A', meter.source)], term.addr)
    eq(meter.request(b'one', gw.addr), b'E:one', 'first answer')
    socks = connected_udp_sockets((h.LO, term.port))
    eq(len(socks), 1, 'gateway session sockets')
    before = {k: gw.stats()[k] for k in COUNTERS}
    mark = gw.log_mark()
    icmp_port_unreachable(raw, socks[0], (h.LO, term.port), '127.0.0.9')
    # logged where it arrives, before anything is done about it
    gw.wait_log(r'session meter-A: Connection refused from the cloud', start=mark)
    eq({k: gw.stats()[k] for k in COUNTERS}, before, 'counters after the forged ICMP error')
    eq(connected_udp_sockets((h.LO, term.port)), socks, 'gateway session sockets after it')
    eq(meter.request(b'two', gw.addr), b'E:two', 'the next answer')
    eq({k: gw.stats()[k] for k in COUNTERS}, before, 'counters after the next round trip')
    gw.wait_log(r'Connection refused from the cloud \(ignored: no uplink waits for an answer\)',
                start=mark)


def delayed_pair(env, gw_dtls=None):
    """meter -> gateway -> (300 ms each way) -> terminator -> echo."""
    echo = env.echo(b'E:')
    term = h.terminator(env, KEYS, echo.addr, dtls={'retransmit_ms': 1000})
    link = BadLink(listen=(h.LO, 0), upstream=(h.LO, term.port), delay_ms=(300, 300))
    env.defer(link.stop)
    meter = env.meter()
    gw = h.gateway(env, KEYS, [('meter-A', meter.source)], '%s:%d' % (h.LO, link.port),
                   dtls=dict({'retransmit_ms': 1000}, **(gw_dtls or {})))
    return meter, gw, link, term


def handshake_survives_a_forged_alert(env, at_gateway, forged=FATAL_ALERT):
    raw = raw_socket()
    env.defer(raw.close)
    # path_timeout_s: the gateway offers heartbeats (its probe), and takes them
    meter, gw, link, term = delayed_pair(env, {'path_timeout_s': 30} if forged is FORGED_HEARTBEAT else None)
    meter.send(b'one', gw.addr)
    if at_gateway:
        rx = gw
        socks = h.wait_until(lambda: connected_udp_sockets((h.LO, link.port)), what='the session socket')
        udp(raw, (h.LO, link.port), socks[0], forged)
    else:
        rx = term
        # after the cookie exchange: the terminator keeps a handshake for the address
        h.wait_until(lambda: term.stats()['handshakes_started'] == 1, what='a terminator handshake')
        socks = connected_udp_sockets((h.LO, term.port))
        eq(len(socks), 1, 'the link\'s sockets toward the terminator')
        udp(raw, socks[0], (h.LO, term.port), forged)
    h.wait_until(lambda: rx.stats()['records_discarded'] + rx.stats()['handshakes_failed'] >= 1,
                 what='the forged record at the %s' % rx.name)
    eq(meter.recv(timeout=30)[0], b'E:one', 'the first answer')
    for d in (gw, term):
        eq({k: d.stats()[k] for k in ('handshakes_started', 'handshakes_completed', 'handshakes_failed')},
           {'handshakes_started': 1, 'handshakes_completed': 1, 'handshakes_failed': 0},
           '%s handshakes' % d.name)
    eq(rx.stats()['records_discarded'], 1, '%s records_discarded' % rx.name)


def test_a_forged_alert_does_not_end_a_gateway_handshake(env):
    handshake_survives_a_forged_alert(env, at_gateway=True)


def test_a_forged_alert_does_not_end_a_terminator_handshake(env):
    handshake_survives_a_forged_alert(env, at_gateway=False)


def test_a_forged_heartbeat_does_not_end_a_gateway_handshake(env):
    handshake_survives_a_forged_alert(env, at_gateway=True, forged=FORGED_HEARTBEAT)


def test_a_forged_heartbeat_does_not_end_a_terminator_handshake(env):
    handshake_survives_a_forged_alert(env, at_gateway=False, forged=FORGED_HEARTBEAT)


if __name__ == '__main__':
    in_own_netns()
    h.main(globals())
