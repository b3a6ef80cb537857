#!/usr/bin/env python3
"""A terminator with `workers = 2`: threads with their own loops and SO_REUSEPORT
sockets. Every meter is served, counters and session lists cover every worker,
sessions resume whichever worker the resuming handshake lands on, reload keeps
them, and SIGTERM stops every worker (control clients connected).
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402

N = 12


def test_two_workers_serve_every_meter_and_report_as_one(env):
    h.psktund()
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(N)}
    meters = [env.meter(name=ident) for ident in keys]
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, extra='workers = 2;')
    # The gateway's sessions stay up (idle_timeout_s is the default, 600 s)
    # until the test closes them: what is listed and counted below cannot
    # change under the assertions however slow the machine is.
    gw = h.gateway(env, keys, [(ident, m.source) for ident, m in zip(keys, meters)], term.addr)
    for m in meters:
        eq(m.request(m.name.encode(), gw.addr), b'E:' + m.name.encode(), '%s echo' % m.name)
    st = term.stats()
    eq((st['sessions'], st['handshakes_completed'], st['plain_in'], st['plain_out']), (N, N, N, N),
       'terminator sessions, handshakes, plain in/out summed over workers')
    eq(sorted(s['identity'] for s in term.sessions()), sorted(keys), 'sessions listed from both workers')
    if 'worker 1 ready' not in term.log_text():
        raise h.Fail('the second worker never started')

    # The gateway closes every session (a reload without the meters: close_notify,
    # and it keeps what resumes them), then the same meters again: each resumes,
    # from a fresh port the kernel may hash to the other worker.
    all_meters = gw.meters
    gw.meters = []
    gw.write()
    eq(gw.reload(), 'configuration reloaded', 'gateway reload without the meters')
    h.await_condition(lambda: term.stats()['sessions'] == 0, 'terminator sessions closed by close_notify')
    gw.meters = all_meters
    gw.write()
    eq(gw.reload(), 'configuration reloaded', 'gateway reload with the meters again')
    for m in meters:
        eq(m.request(b'again', gw.addr), b'E:again', '%s second echo' % m.name)
    st = term.stats()
    eq((st['handshakes_completed'], st['handshakes_resumed']), (2 * N, N), 'every second handshake resumed')

    eq(term.reload(), 'configuration reloaded', 'reload')
    eq(term.stats()['sessions'], N, 'sessions kept over reload')
    for m in meters:
        eq(m.request(b'after-reload', gw.addr), b'E:after-reload', '%s after reload' % m.name)
    eq(term.stats()['handshakes_completed'], 2 * N, 'no new handshakes after reload')
    # The control clients are the leader's alone: a stopping worker leaves them be,
    # the leader hangs up on them.
    silent = []
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(term.control)
        env.defer(c.close)
        silent.append(c)
    eq(term.terminate(), 0, 'exit code after SIGTERM with control clients connected')
    for c in silent:
        c.settimeout(h.T)
        eq(c.recv(1), b'', 'a control client is hung up on at exit')


if __name__ == '__main__':
    h.main(globals())
