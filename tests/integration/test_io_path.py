#!/usr/bin/env python3
"""Sends on session sockets: io_uring when built with liburing and the kernel
allows it, system calls otherwise or with PSKTUN_IO_URING=0 (issue 15).  The
daemon says once at start which it uses (and why not io_uring), `stats` shows
it as io_uring=1 or 0, and a meter's round trip works either way.  Receives on
session sockets go through the ring too (multishot recvmsg, provided
buffers): with one buffer (PSKTUN_IO_URING_RX_BUFS=1) a flood finds it taken,
the kernel keeps the datagram in the socket, ring_nobufs counts it, and every
datagram still arrives.  The whole
suite runs on both paths in CI (tests/check.sh); this pins down the switch.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402


def built_with_liburing():
    path = os.path.join(os.environ.get('PLUGIN_BUILD_DIR', ''), 'config.h')
    try:
        with open(path) as f:
            return bool(re.search(r'^#define HAVE_LIBURING 1$', f.read(), re.M))
    except OSError:
        return None


def kernel_allows_io_uring():
    try:
        with open('/proc/sys/kernel/io_uring_disabled') as f:
            return f.read().strip() == '0'
    except OSError:
        return True     # before 6.6 there is no such switch


def start_pair(env, setting, rx_bufs=None):
    """meter -> gateway -> terminator -> echo, both daemons with PSKTUN_IO_URING=setting
    (None: unset) and PSKTUN_IO_URING_RX_BUFS=rx_bufs (None: unset)."""
    saved = os.environ.get('PSKTUN_IO_URING')
    saved_bufs = os.environ.pop('PSKTUN_IO_URING_RX_BUFS', None)
    if setting is None:
        os.environ.pop('PSKTUN_IO_URING', None)
    else:
        os.environ['PSKTUN_IO_URING'] = setting
    if rx_bufs is not None:
        os.environ['PSKTUN_IO_URING_RX_BUFS'] = str(rx_bufs)
    try:
        keys = {'meter-0001': os.urandom(16)}
        m = env.meter(name='meter-0001')
        echo = env.echo(prefix=b'E:')
        term = h.terminator(env, keys, echo.addr)
        gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr)
    finally:
        if saved is None:
            os.environ.pop('PSKTUN_IO_URING', None)
        else:
            os.environ['PSKTUN_IO_URING'] = saved
        os.environ.pop('PSKTUN_IO_URING_RX_BUFS', None)
        if saved_bufs is not None:
            os.environ['PSKTUN_IO_URING_RX_BUFS'] = saved_bufs
    return m, gw, term


def said(d):
    """What the daemon said at start: ('io_uring', '') or ('system calls', reason)."""
    m = d.wait_log(r'sends on session sockets: (io_uring|system calls)(?: \(io_uring: ([^)\n]*)\))?')
    return m.group(1).decode(), (m.group(2) or b'').decode()


def said_rx(d):
    """What the daemon said when its first session opened, about receives."""
    m = d.wait_log(r'receives on session sockets: (io_uring|system calls) \(([^)\n]*)\)')
    return m.group(1).decode(), m.group(2).decode()


def test_default_path_said_once_and_in_stats(env):
    h.psktund()
    m, gw, term = start_pair(env, None)
    for d in (gw, term):
        path, why = said(d)
        h.log('%s: %s %s' % (d.name, path, why))
        eq(d.log_text().count('sends on session sockets'), 1, '%s: said once' % d.name)
        eq(d.stats()['io_uring'], 1 if path == 'io_uring' else 0, '%s: stats io_uring' % d.name)
        if path != 'io_uring' and not why:
            raise Fail('%s: system calls without a reason' % d.name)
        if built_with_liburing() and kernel_allows_io_uring() and path != 'io_uring':
            raise Fail('%s: built with liburing on a kernel that allows io_uring, yet: %s (%s)'
                       % (d.name, path, why))
    eq(m.request(b'ring', gw.addr), b'E:ring', 'echo')
    for d in (gw, term):
        rx, why = said_rx(d)
        h.log('%s: receives: %s (%s)' % (d.name, rx, why))
        eq(rx, path, '%s: receives as sends' % d.name)   # Linux 6.0 or later here


def test_environment_forces_system_calls(env):
    h.psktund()
    m, gw, term = start_pair(env, '0')
    why = 'PSKTUN_IO_URING=0' if built_with_liburing() else 'built without liburing'
    for d in (gw, term):
        eq(said(d), ('system calls', why), '%s: what it said' % d.name)
        eq(d.stats()['io_uring'], 0, '%s: stats io_uring' % d.name)
    eq(m.request(b'plain', gw.addr), b'E:plain', 'echo')
    for d in (gw, term):
        eq(said_rx(d), ('system calls', 'io_uring: ' + why), '%s: what it said about receives' % d.name)
        eq(d.stats()['ring_nobufs'], 0, '%s: ring_nobufs' % d.name)


FLOOD = 200


def test_receives_through_the_ring_wait_for_a_buffer_and_lose_nothing(env):
    h.psktund()
    if not built_with_liburing() or not kernel_allows_io_uring():
        h.log('no io_uring here: nothing to test')
        return
    m, gw, term = start_pair(env, None, rx_bufs=1)
    eq(m.request_retry(b'first', gw.addr), b'E:first', 'echo')
    m.send(b'second', gw.addr)
    while True:     # the answers to the first's retries come before it
        got = m.recv()[0]
        if got == b'E:second':
            break
        eq(got, b'E:first', 'an answer before the second')
    for d in (gw, term):
        eq(said_rx(d), ('io_uring', '1 buffers of 2048 bytes, up to 1'), '%s: what it said about receives' % d.name)
        eq(d.log_text().count('receives on session sockets'), 1, '%s: said once' % d.name)
    # Each flood puts FLOOD datagrams on the terminator's socket to the echo
    # and FLOOD records on the gateway's socket to the terminator at once: one
    # buffer cannot take them in one go. Floods until a daemon saw that (the
    # first one does, as a rule), each answered in full.
    for i in range(20):
        want = [b'E:%d-%d' % (i, j) for j in range(FLOOD)]
        for j in range(FLOOD):
            m.send(b'%d-%d' % (i, j), gw.addr)
        got = [m.recv()[0] for _ in range(FLOOD)]
        eq(sorted(got), sorted(want), 'flood %d: every answer, once' % i)
        st = {d.name: d.stats() for d in (gw, term)}
        if st['gateway']['ring_nobufs'] + st['terminator']['ring_nobufs'] > 0:
            break
    print('after %d flood(s) of %d with one receive buffer: ring_nobufs gateway %d, terminator %d'
          % (i + 1, FLOOD, st['gateway']['ring_nobufs'], st['terminator']['ring_nobufs']), file=sys.stderr)
    if st['gateway']['ring_nobufs'] + st['terminator']['ring_nobufs'] == 0:
        raise Fail('20 floods of %d with one receive buffer, ring_nobufs 0 on both: '
                   'the session sockets are not read through the ring' % FLOOD)
    for d in (gw, term):
        eq((st[d.name]['dropped_ring'], st[d.name]['dropped_send'], st[d.name]['dropped_malformed']),
           (0, 0, 0), '%s: dropped_ring, dropped_send, dropped_malformed' % d.name)


if __name__ == '__main__':
    h.main(globals())
