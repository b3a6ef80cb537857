#!/usr/bin/env python3
"""Keys stay out of core dumps: a `gcore` image of a running gateway and
terminator, a meter's session up between them, holds no PSK (neither its raw
bytes nor its hex text), and a terminator's ticket master key is not in its
image either. The memory that holds them is marked VM_DONTDUMP ("dd" in
/proc/PID/smaps), which gdb's gcore honours as the kernel's dumper does.
Exit 0: all passed, 1: a test failed, 77: psktund or gdb missing."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import resil  # noqa: E402
from harness import eq, Fail  # noqa: E402


def gcore(env, d):
    gc = shutil.which('gcore')
    if not gc:
        raise h.Skip('gcore (gdb) not installed')
    if resil.is_asan(d.proc.pid):
        # gcore walks AddressSanitizer's terabytes of shadow mappings for
        # minutes; the plain build runs this test on the same code.
        raise h.Skip('an AddressSanitizer build (the plain build runs this test)')
    prefix = env.path('core-' + d.name)
    r = subprocess.run([gc, '-o', prefix, str(d.proc.pid)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=120)
    path = '%s.%d' % (prefix, d.proc.pid)
    if r.returncode != 0 or not os.path.exists(path):
        raise h.Skip('gcore cannot attach here: %s' % r.stderr.decode(errors='replace')[-300:])
    with open(path, 'rb') as f:
        core = f.read()
    os.unlink(path)
    h.log('%s: core of %d bytes' % (d.name, len(core)))
    if len(core) < 100000:
        raise Fail('%s: the core file is only %d bytes' % (d.name, len(core)))
    return core


def dontdump_mappings(pid):
    """How many mappings of the process carry the dd (VM_DONTDUMP) flag."""
    with open('/proc/%d/smaps' % pid) as f:
        return sum(1 for line in f if line.startswith('VmFlags:') and ' dd' in line)


def assert_absent(core, secret, what):
    for form, needle in (('raw', secret), ('hex', secret.hex().encode()),
                         ('HEX', secret.hex().upper().encode())):
        at = core.find(needle)
        if at >= 0:
            raise Fail('%s is in the core file (%s, at offset %d)' % (what, form, at))


def test_psks_are_not_in_a_core_dump_of_either_role(env):
    h.psktund()
    # distinctive keys, 16 and 32 bytes, nothing else in the process looks like them
    keys = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(32)}
    m1, m2 = env.meter(name='meter-0001'), env.meter(name='meter-0002')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0001', m1.source), ('meter-0002', m2.source)], term.addr)
    eq(m1.request(b'one', gw.addr), b'E:one', 'meter-0001 echo')
    eq(m2.request(b'two', gw.addr), b'E:two', 'meter-0002 echo')
    eq(term.stats()['sessions'], 2, 'terminator sessions')
    for d in (gw, term):
        if not dontdump_mappings(d.proc.pid):
            raise Fail('%s: no mapping is marked dd (MADV_DONTDUMP) in smaps' % d.name)
        core = gcore(env, d)
        for ident, key in keys.items():
            assert_absent(core, key, '%s\'s key (%s)' % (ident, d.name))
    # the sessions still work after the dumps: the keys were not lost
    eq(m1.request(b'three', gw.addr), b'E:three', 'meter-0001 echo after the dumps')
    print('no key in the cores of a gateway and a terminator with 2 sessions up', flush=True)


def test_reloaded_psks_are_not_in_a_core_dump(env):
    """A reload reads the key file on a thread of its own: nothing of it stays behind in memory a dump holds."""
    h.psktund()
    keys = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(32)}
    m1 = env.meter(name='meter-0001')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0001', m1.source)], term.addr)
    eq(term.reload(), 'configuration reloaded', 'reload')
    eq(m1.request(b'one', gw.addr), b'E:one', 'meter-0001 echo after the reload')
    core = gcore(env, term)
    for ident, key in keys.items():
        assert_absent(core, key, '%s\'s reloaded key' % ident)
    print('no reloaded key in the core of a terminator', flush=True)


def test_the_ticket_master_key_is_not_in_a_core_dump(env):
    h.psktund()
    ticket = os.urandom(64)
    term = h.Daemon(env, 'terminator', 'terminator',
                    [dict(name='t1', accept='127.0.0.1:%d' % h.free_udp_port(),
                          connect='127.0.0.1:%d' % h.free_udp_port())],
                    {'meter-0001': os.urandom(16)}, dtls={'tickets': True, 'ticket_key_file': 'ticket.key'})
    path = os.path.join(term.dir, 'ticket.key')
    with open(path, 'w') as f:
        f.write(ticket.hex() + '\n')
    os.chmod(path, 0o600)
    env.defer(term.stop)
    term.start()
    assert_absent(gcore(env, term), ticket, 'the ticket master key')


if __name__ == '__main__':
    h.main(globals())
