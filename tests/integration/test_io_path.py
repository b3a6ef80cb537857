#!/usr/bin/env python3
"""Sends on session sockets: io_uring when built with liburing and the kernel
allows it, system calls otherwise or with PSKTUN_IO_URING=0 (issue 15).  The
daemon says once at start which it uses (and why not io_uring), `stats` shows
it as io_uring=1 or 0, and a meter's round trip works either way.  The whole
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


def start_pair(env, setting):
    """meter -> gateway -> terminator -> echo, both daemons with PSKTUN_IO_URING=setting (None: unset)."""
    saved = os.environ.get('PSKTUN_IO_URING')
    if setting is None:
        os.environ.pop('PSKTUN_IO_URING', None)
    else:
        os.environ['PSKTUN_IO_URING'] = setting
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
    return m, gw, term


def said(d):
    """What the daemon said at start: ('io_uring', '') or ('system calls', reason)."""
    m = d.wait_log(r'sends on session sockets: (io_uring|system calls)(?: \(io_uring: ([^)\n]*)\))?')
    return m.group(1).decode(), (m.group(2) or b'').decode()


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


def test_environment_forces_system_calls(env):
    h.psktund()
    m, gw, term = start_pair(env, '0')
    why = 'PSKTUN_IO_URING=0' if built_with_liburing() else 'built without liburing'
    for d in (gw, term):
        eq(said(d), ('system calls', why), '%s: what it said' % d.name)
        eq(d.stats()['io_uring'], 0, '%s: stats io_uring' % d.name)
    eq(m.request(b'plain', gw.addr), b'E:plain', 'echo')


if __name__ == '__main__':
    h.main(globals())
