#!/usr/bin/env python3
"""SIGTERM and SIGINT: psktund closes every session with close_notify and
exits 0; the DTLS peer on the other end sees the close_notify.
Exit 0: all passed, 1: a test failed, 77: psktund or a peer missing."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

KEYS = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(16)}


def test_sigterm_terminator_sends_close_notify_and_exits_0(env):
    h.psktund()
    echo = env.echo(prefix=b'echo:')
    term = h.terminator(env, KEYS, echo.addr)
    cli = h.gnutls_cli(env, term.port, KEYS['meter-0001'], 'meter-0001')
    cli.wait_out(r'- Handshake was completed')
    cli.send(b'ping\n')
    cli.wait_out(rb'\necho:ping\n')
    eq(term.terminate(), 0, 'terminator exit code after SIGTERM')
    cli.wait_out(r'Peer has closed the GnuTLS connection')
    cli.wait_exit()


def test_sigterm_gateway_sends_close_notify_to_openssl_s_server(env):
    h.psktund()
    port = h.free_udp_port()
    key = KEYS['meter-0001']
    # not quiet: s_server prints DONE when it reads close_notify
    srv = h.openssl_s_server(env, port, key, 'meter-0001', quiet=False)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, {'meter-0001': key}, [('meter-0001', m.source)], '%s:%d' % (h.LO, port))
    m.send(b'hello-before-stop\n', gw.addr)
    srv.wait_out(rb'\nhello-before-stop\n')
    mark = srv.out.size()
    eq(gw.terminate(), 0, 'gateway exit code after SIGTERM')
    srv.wait_out(rb'\nDONE\n', start=mark - 1)


def test_sigint_exits_0_with_sessions_up(env):
    h.psktund()
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, KEYS, echo.addr)
    meters = [env.meter(name=k) for k in KEYS]
    gw = h.gateway(env, KEYS, [(k, m.source) for k, m in zip(KEYS, meters)], term.addr)
    for m in meters:
        eq(m.request(m.name.encode(), gw.addr), b'E:' + m.name.encode(), m.name)
    gw.proc.send_signal(signal.SIGINT)
    eq(gw.terminate(), 0, 'gateway exit code after SIGINT')
    # the gateway's close_notify ends both terminator sessions
    h.wait_until(lambda: term.stats()['sessions'] == 0, what='terminator sessions == 0')
    eq(term.terminate(), 0, 'terminator exit code after SIGTERM')


def test_signals_during_the_stop_do_not_kill_it(env):
    # A service manager may send SIGTERM again while the sessions close; the
    # daemon still ends as it should (exit 0), each of several times.
    h.psktund()
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, KEYS, echo.addr)
    for i in range(5):
        meters = [env.meter(name=k) for k in KEYS]
        gw = h.gateway(env, KEYS, [(k, m.source) for k, m in zip(KEYS, meters)], term.addr,
                       name='gateway%d' % i)
        for m in meters:
            eq(m.request(m.name.encode(), gw.addr), b'E:' + m.name.encode(), m.name)
        gw.proc.send_signal(signal.SIGTERM)
        gw.wait_log(rb'closing every session')
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            if gw.proc.poll() is None:
                gw.proc.send_signal(sig)
        eq(gw.terminate(), 0, 'gateway %d exit code after more signals during its stop' % i)
        for m in meters:
            m.close()


def test_sigterm_idle_daemon_exits_0(env):
    h.psktund()
    echo = env.echo()
    term = h.terminator(env, KEYS, echo.addr)
    eq(term.terminate(), 0, 'exit code')
    if os.path.exists(term.control):
        raise Fail('control socket left behind: %s' % term.control)


if __name__ == '__main__':
    h.main(globals())
