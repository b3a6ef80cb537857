#!/usr/bin/env python3
"""psktunctl: genkey makes key file lines psktund accepts, metrics is the stats in
Prometheus text format, and misuse exits 2 with the usage. The control socket
drops clients that stay silent, so they cannot lock psktunctl out.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402


def ctl(*args):
    r = subprocess.run([h.psktunctl()] + list(args), capture_output=True, timeout=h.T)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_genkey_prints_a_fresh_16_byte_key_line(env):
    h.psktund()
    rc, out1, _ = ctl('genkey', 'meter-0001')
    eq(rc, 0, 'exit code')
    if not re.fullmatch(r'meter-0001:[0-9a-f]{32}\n', out1):
        raise h.Fail('genkey printed %r' % out1)
    _, out2, _ = ctl('genkey', 'meter-0001')
    if out1 == out2:
        raise h.Fail('two keys in a row are the same')
    keys = {line.split(':')[0]: bytes.fromhex(line.split(':')[1]) for line in (out1.strip(),)}
    term = h.terminator(env, keys, '127.0.0.1:%d' % h.free_udp_port())   # psktund accepts the line
    eq(term.stats()['sessions'], 0, 'sessions')


def test_genkey_refuses_an_identity_with_a_colon(env):
    h.psktund()
    rc, out, err = ctl('genkey', 'bad:name')
    eq((rc, out), (2, ''), 'exit code and output')
    if "no ':'" not in err:
        raise h.Fail('no reason given: %r' % err)


def test_metrics_are_the_stats_in_prometheus_text_format(env):
    h.psktund()
    keys = {'meter-0001': os.urandom(16)}
    m = env.meter(name='meter-0001')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr)
    eq(m.request(b'x', gw.addr), b'E:x', 'echo')
    rc, out, _ = ctl('-s', gw.control, 'metrics')
    eq(rc, 0, 'exit code')
    st = gw.stats()
    lines = out.splitlines()
    for k, v in st.items():
        gauge = k in ('sessions', 'handshaking', 'resumable', 'resumable_bytes')
        name = 'psktun_' + k + ('' if gauge else '_total')
        want = ['# TYPE %s %s' % (name, 'gauge' if gauge else 'counter'), '%s %d' % (name, v)]
        i = lines.index(want[0]) if want[0] in lines else -1
        if i < 0 or lines[i + 1].split()[0] != name:
            raise h.Fail('no %r in metrics' % want[0])
        if k not in ('plain_in', 'plain_out', 'records_in', 'records_out'):   # may move on
            eq(lines[i + 1], want[1], name)
    eq(len(lines), 2 * len(st), 'two lines a counter')


def test_silent_control_clients_are_dropped_and_psktunctl_gets_through(env):
    h.psktund()
    term = h.terminator(env, {'meter-0001': os.urandom(16)}, '127.0.0.1:%d' % h.free_udp_port())
    silent = []
    for _ in range(16):   # every slot the daemon allows, none sending a command
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(term.control)
        env.defer(s.close)
        silent.append(s)
    rc, out, _ = ctl('-s', term.control, 'stats')
    eq((rc, out), (1, 'error=busy: 16 control clients are connected; try again\n'),
       'psktunctl exit code and answer while 16 silent clients hold the socket')
    t0 = time.monotonic()
    for s in silent:      # the daemon hangs up on each (EOF) after its timeout
        s.settimeout(h.T)
        eq(s.recv(1), b'', 'a silent client\'s connection is closed')
    waited = time.monotonic() - t0
    rc, out, _ = ctl('-s', term.control, 'stats')
    eq(rc, 0, 'psktunctl exit code after the silent clients were dropped')
    if 'sessions=0' not in out.splitlines():
        raise h.Fail('stats printed %r' % out)
    print('16 silent control clients dropped after %.1f s' % waited, flush=True)


def test_misuse_prints_the_usage_and_exits_2(env):
    h.psktund()
    for args in ((), ('frobnicate',), ('genkey',), ('stats', 'extra')):
        rc, out, err = ctl(*args)
        eq(rc, 2, 'exit code for %r' % (args,))
        if 'usage: psktunctl' not in err:
            raise h.Fail('no usage for %r: %r' % (args, err))


if __name__ == '__main__':
    h.main(globals())
