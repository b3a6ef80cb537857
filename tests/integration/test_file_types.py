#!/usr/bin/env python3
"""A file psktund reads (configuration, key file, ticket key file) that is a FIFO
never hangs it: `psktund -n` says FILE: ... is not a regular file (it is a FIFO)
and exits 1 at once; a reload with a FIFO key file or configuration fails with
that line and the old configuration keeps serving (workers too), and SIGTERM
still stops it. Nothing ever writes to the FIFOs: the old code waited forever.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

KEY = bytes(range(16))
WAIT = 10        # a check that takes longer than this hangs


def check(conf):
    try:
        return h.check_config(conf, timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise Fail('psktund -n -c %s hung (killed after %d s)' % (conf, WAIT))


def expect_fifo_refused(conf, fifo, what):
    rc, out, err = check(conf)
    eq(rc, 1, 'psktund -n exit code')
    want = '%s: %s is not a regular file (it is a FIFO)' % (fifo, what)
    if want not in err.splitlines():
        raise Fail('want the line %r, got:\n%s' % (want, err))
    if 'configuration OK' in out:
        raise Fail('"configuration OK" printed')


def test_check_refuses_a_fifo_key_file(env):
    h.psktund()
    os.mkfifo(env.path('keys.psk'), 0o600)
    conf = env.write('psktun.conf', h.config_text(
        'gateway', tunnels=[dict(name='t1', accept='127.0.0.1:40000', connect='127.0.0.1:40002')],
        meters=[('meter-0001', '127.0.0.1:40001')]))
    expect_fifo_refused(conf, env.path('keys.psk'), 'key file')


def test_check_refuses_a_fifo_configuration(env):
    h.psktund()
    conf = env.path('psktun.conf')
    os.mkfifo(conf, 0o600)
    expect_fifo_refused(conf, conf, 'the configuration')


def test_check_refuses_a_fifo_ticket_key_file(env):
    h.psktund()
    h.write_keys(env.path('keys.psk'), {'meter-0001': KEY})
    os.mkfifo(env.path('ticket.key'), 0o600)
    conf = env.write('psktun.conf', h.config_text(
        'terminator', tunnels=[dict(name='t1', accept='127.0.0.1:40000', connect='127.0.0.1:40002')],
        dtls={'tickets': 'true', 'ticket_key_file': 'ticket.key'}).replace('"true"', 'true'))
    expect_fifo_refused(conf, env.path('ticket.key'), 'the ticket key file')


def fifo_reload_keeps_serving(env, workers, replace):
    """A gateway and a terminator (with `workers`) carry a meter's datagrams; then
    `replace` (keyfile or conf) of the terminator becomes a FIFO and it reloads."""
    keys = {'meter-0001': KEY}
    m = env.meter(name='meter-0001')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, extra='workers = %d;' % workers if workers > 1 else '')
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr)
    eq(m.request_retry(b'one', gw.addr), b'E:one', 'echo before the reload')
    path = getattr(term, replace)
    os.unlink(path)
    os.mkfifo(path, 0o600)
    try:
        eq(term.reload(timeout=WAIT), 'reload failed', 'reload outcome')
    except Fail:
        raise Fail('the reload hung on the FIFO %s (no outcome within %d s)' % (path, WAIT))
    what = 'key file' if replace == 'keyfile' else 'the configuration'
    want = '%s: %s is not a regular file (it is a FIFO)' % (path, what)
    if want not in term.log_text():
        raise Fail('no %r in the log' % want)
    eq(m.request(b'two', gw.addr), b'E:two', 'echo after the failed reload')
    eq(term.stats()['sessions'], 1, 'terminator sessions after the failed reload')
    eq(term.terminate(), 0, 'exit code after SIGTERM')


def test_a_reload_with_a_fifo_key_file_fails_and_keeps_serving(env):
    h.psktund()
    fifo_reload_keeps_serving(env, 1, 'keyfile')


def test_a_reload_with_a_fifo_key_file_fails_and_keeps_serving_with_workers(env):
    h.psktund()
    fifo_reload_keeps_serving(env, 2, 'keyfile')


def test_a_reload_with_a_fifo_configuration_fails_and_keeps_serving(env):
    h.psktund()
    fifo_reload_keeps_serving(env, 1, 'conf')


if __name__ == '__main__':
    h.main(globals())
