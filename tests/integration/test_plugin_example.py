#!/usr/bin/env python3
"""The example plugin (plugins/example: plugin = "example", option
max_bytes) on loopback: meter -> gateway -> terminator -> UDP echo backend,
both daemons with max_bytes = 64. A datagram of max_bytes passes both ways;
one byte more is dropped where it enters (the gateway's plain side, the
terminator's backend side), counted in dropped_policy, and logged once with
the host's one prefix "tunnel t1: plugin example: "; `psktund -n` refuses a
bad max_bytes with the plugin's sentence after that prefix; and example.c
builds from the installed header alone (C11, -Wall -Wextra -Wpedantic
-Werror) into a plugin that psktund loads.
Exit 0: all passed, 1: a test failed, 77: psktund or the plugin missing."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
KEYS = {'meter-0001': os.urandom(16)}
MAX = 64
OPTIONS = {'max_bytes': MAX}
# How long to listen for a datagram that must not come (never for something awaited).
ABSENCE_S = 0.5
COUNTERS = ('plain_in', 'plain_out', 'dropped_policy', 'dropped_malformed', 'dropped_unknown')


def _pick(st):
    return {k: st[k] for k in COUNTERS}


def _setup(env):
    h.psktund()
    h.psktunctl()
    pdir = h.plugin_dir(env)
    if not os.path.exists(os.path.join(pdir, 'example.so')):
        raise h.Skip('example.so not built under PLUGIN_BUILD_DIR')
    return pdir


def _chain(env, pdir):
    meter = env.meter()
    echo = env.echo(prefix=b'E:')
    tport, gport = h.free_udp_port(), h.free_udp_port()
    term = env.daemon('terminator', 'terminator',
                      [dict(name='t1', plugin='example', options=OPTIONS,
                            accept='%s:%d' % (h.LO, tport), connect=echo.addr)],
                      KEYS, plugin_dir=pdir)
    gw = env.daemon('gateway', 'gateway',
                    [dict(name='t1', plugin='example', options=OPTIONS,
                          accept='%s:%d' % (h.LO, gport), connect='%s:%d' % (h.LO, tport))],
                    KEYS, meters=[('meter-0001', meter.source)], plugin_dir=pdir)
    gw.addr = '%s:%d' % (h.LO, gport)
    return meter, echo, term, gw


def _dropped_line(size):
    # The host's prefix once, then the plugin's own words: nothing repeated.
    return re.escape(': notice: tunnel t1: plugin example: dropped a datagram of %d bytes '
                     '(max_bytes = %d)\n' % (size, MAX))


def test_datagrams_over_max_bytes_are_dropped_and_counted_both_ways(env):
    pdir = _setup(env)
    meter, echo, term, gw = _chain(env, pdir)

    # Exactly max_bytes passes: 62 bytes up, 'E:' + 62 = 64 bytes back.
    fits = b'a' * (MAX - 2)
    eq(meter.request_retry(fits, gw.addr), b'E:' + fits, 'reply of max_bytes')

    # One byte over, from the meter: dropped by the gateway's plugin.
    mark = gw.log_mark()
    meter.send(b'b' * (MAX + 1), gw.addr)
    gw.wait_stat('dropped_policy', 1)
    gw.wait_log(_dropped_line(MAX + 1), start=mark)

    # 63 bytes reach the backend; its 65-byte echo is dropped by the
    # terminator's plugin on the way back (on_plain, terminator side).
    mark = term.log_mark()
    meter.send(b'c' * (MAX - 1), gw.addr)
    echo.wait_count(2)
    term.wait_stat('dropped_policy', 1)
    term.wait_log(_dropped_line(MAX + 1), start=mark)
    meter.sock.settimeout(ABSENCE_S)
    eq(meter.pending(), [], 'nothing came back for the dropped echo')

    # The session carries on, and a second drop is logged at debug level only.
    eq(meter.request(fits, gw.addr), b'E:' + fits, 'served after the drops')
    meter.send(b'd' * 100, gw.addr)
    gw.wait_stat('dropped_policy', 2)
    eq(len(re.findall(r'notice: tunnel t1: plugin example: dropped', gw.log_text())), 1,
       'notices of a drop at the gateway')
    eq([p for p in echo.payloads()], [fits, b'c' * (MAX - 1), fits], 'what the backend got')
    eq(_pick(gw.stats()), dict(plain_in=5, plain_out=2, dropped_policy=2, dropped_malformed=0,
                               dropped_unknown=0), 'gateway stats')
    eq(_pick(term.stats()), dict(plain_in=3, plain_out=3, dropped_policy=1, dropped_malformed=0,
                                 dropped_unknown=0), 'terminator stats')


def test_check_config_refuses_a_bad_max_bytes_with_one_prefix(env):
    pdir = _setup(env)
    env.write('keys.psk', 'meter-0001:%s\n' % ('ab' * 16), 0o600)
    for value, why in (('0', 'max_bytes = "0": expected bytes from 1 to 65535'),
                       ('12k', 'max_bytes = "12k": expected bytes from 1 to 65535')):
        conf = env.write('bad-%s.conf' % value, h.config_text(
            'gateway', plugin_dir=pdir,
            tunnels=[dict(name='t1', plugin='example', options={'max_bytes': value},
                          accept='%s:%d' % (h.LO, h.free_udp_port()),
                          connect='%s:1' % h.LO)]))
        eq(h.check_config(conf), (1, '', '%s:5: tunnel t1: plugin example: %s\n' % (conf, why)),
           'psktund -n with max_bytes = %s' % value)
    conf = env.write('unknown.conf', h.config_text(
        'gateway', plugin_dir=pdir,
        tunnels=[dict(name='t1', plugin='example', options={'colour': 'red'},
                      accept='%s:%d' % (h.LO, h.free_udp_port()), connect='%s:1' % h.LO)]))
    eq(h.check_config(conf), (1, '', '%s:5: tunnel t1: plugin example: unknown option "colour" '
                                     '(known: max_bytes)\n' % conf), 'psktund -n with colour')



def test_example_c_builds_from_the_header_alone_and_loads(env):
    h.psktund()
    cc = os.environ.get('CC', 'cc').split()
    if not shutil.which(cc[0]):
        raise h.Skip('no C compiler (%s)' % cc[0])
    inc = env.path('include', 'psktun')
    os.makedirs(inc)
    shutil.copy(os.path.join(SRC, 'plugins', 'psktun', 'plugin.h'), inc)
    pdir = env.path('plugins')
    os.makedirs(pdir)
    so = os.path.join(pdir, 'example.so')
    argv = cc + ['-std=c11', '-Wall', '-Wextra', '-Wpedantic', '-Werror', '-shared', '-fPIC',
                 '-I', env.path('include'), os.path.join(SRC, 'plugins', 'example', 'example.c'),
                 '-o', so]
    r = subprocess.run(argv, capture_output=True, timeout=120)
    eq((r.returncode, r.stderr.decode()), (0, ''), ' '.join(argv))
    env.write('keys.psk', 'meter-0001:%s\n' % ('ab' * 16), 0o600)
    conf = env.write('psktun.conf', h.config_text(
        'gateway', plugin_dir=pdir,
        tunnels=[dict(name='t1', plugin='example', options={'max_bytes': 512},
                      accept='%s:%d' % (h.LO, h.free_udp_port()), connect='%s:1' % h.LO)]))
    eq(h.check_config(conf), (0, 'configuration OK\n', ''), 'psktund -n with the built plugin')


if __name__ == '__main__':
    h.main(globals())
