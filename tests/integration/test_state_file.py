#!/usr/bin/env python3
"""state_file: resumption state kept across a restart.

meters -> psktund gateway -> psktund terminator -> echo. A daemon stopped
with SIGTERM writes its resumption state (terminator: its session cache;
gateway: each meter's resumption data) to `state_file` and reads it at
start, so after a restart of either, or both, every meter's next handshake
is resumed: exact handshakes_completed and handshakes_resumed on both sides.
The file is 0600; sealed (AES-256-GCM) with session_cache.key_file when set.
A damaged, truncated, foreign, stale or wrongly sealed file is ignored with
one log line, and the meters shake hands in full.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import re
import stat
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

N_METERS = 5
STATE = 'state_file = "state";'
HDR_LEN = 28


def _restart(d):
    eq(d.terminate(), 0, '%s exit code' % d.name)
    d.rc = None
    d.start()


def _round(meters, gw, tag):
    for m in meters:
        p = b'%s/%s' % (m.name.encode(), tag)
        eq(m.request_retry(p, gw.addr), b'E:' + p, '%s reply (%s)' % (m.name, tag.decode()))


def _hs(d):
    st = d.stats()
    return st['handshakes_completed'], st['handshakes_resumed']


def _setup(env, term_extra=STATE, gw_extra=STATE, n=N_METERS):
    h.psktund()
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(n)}
    meters = [env.meter(name=k) for k in keys]
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, extra=term_extra)
    gw = h.gateway(env, keys, [(k, m.source) for k, m in zip(keys, meters)], term.addr,
                   extra=gw_extra)
    _round(meters, gw, b'first')
    eq(_hs(term), (n, 0), 'terminator handshakes (completed, resumed) before the restart')
    eq(_hs(gw), (n, 0), 'gateway handshakes (completed, resumed) before the restart')
    return keys, meters, term, gw


def _state_path(d):
    return os.path.join(d.dir, 'state')


def _check_file_mode(path):
    st = os.stat(path)
    eq(stat.S_IMODE(st.st_mode), 0o600, '%s mode' % path)


def test_gateway_restart_every_meter_resumes(env):
    keys, meters, term, gw = _setup(env)
    _restart(gw)
    gw.wait_log(r'state file \S+: %d resumable sessions restored, 0 expired' % N_METERS, 5)
    _check_file_mode(_state_path(gw))
    _round(meters, gw, b'after-restart')
    eq(_hs(gw), (N_METERS, N_METERS), 'gateway handshakes (completed, resumed) after its restart')
    eq(_hs(term), (2 * N_METERS, N_METERS), 'terminator handshakes (completed, resumed)')


def test_terminator_restart_every_meter_resumes(env):
    keys, meters, term, gw = _setup(env)
    _restart(term)
    term.wait_log(r'state file \S+: %d resumable sessions restored, 0 expired' % N_METERS, 5)
    _check_file_mode(_state_path(term))
    # its close_notify closed every gateway session; the next request shakes hands again
    h.wait_until(lambda: gw.stats()['sessions'] == 0, 10, 'gateway sessions closed')
    _round(meters, gw, b'after-restart')
    eq(_hs(term), (N_METERS, N_METERS), 'terminator handshakes (completed, resumed) after its restart')
    eq(_hs(gw), (2 * N_METERS, N_METERS), 'gateway handshakes (completed, resumed)')


def test_both_restart_every_meter_resumes(env):
    keys, meters, term, gw = _setup(env)
    _restart(gw)
    _restart(term)
    _round(meters, gw, b'after-restart')
    eq(_hs(term), (N_METERS, N_METERS), 'terminator handshakes (completed, resumed)')
    eq(_hs(gw), (N_METERS, N_METERS), 'gateway handshakes (completed, resumed)')


def test_without_state_file_a_restart_costs_full_handshakes(env):
    """The baseline the state file removes."""
    keys, meters, term, gw = _setup(env, term_extra='', gw_extra='')
    _restart(term)
    _round(meters, gw, b'after-restart')
    eq(_hs(term), (N_METERS, 0), 'terminator handshakes (completed, resumed)')


def _write_cache_key(d, key):
    p = os.path.join(d.dir, 'cache.key')
    with open(p, 'w') as f:
        f.write(key.hex() + '\n')
    os.chmod(p, 0o600)


SEALED = STATE + '\nsession_cache = { key_file = "cache.key"; };'


def _sealed_terminator(env, keys, echo, key):
    port = h.free_udp_port()
    d = h.Daemon(env, 'terminator', 'terminator',
                 [dict(name='t1', accept='%s:%d' % (h.LO, port), connect=echo.addr)], keys,
                 extra=SEALED)
    _write_cache_key(d, key)
    env.defer(d.stop)
    d.start()
    d.port, d.addr = port, '%s:%d' % (h.LO, port)
    return d


def test_sealed_state_file_resumes_and_holds_no_plaintext(env):
    h.psktund()
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(N_METERS)}
    meters = [env.meter(name=k) for k in keys]
    echo = env.echo(prefix=b'E:')
    term = _sealed_terminator(env, keys, echo, os.urandom(32))
    gw = h.gateway(env, keys, [(k, m.source) for k, m in zip(keys, meters)], term.addr)
    _round(meters, gw, b'first')
    _restart(term)
    term.wait_log(r'state file \S+: %d resumable sessions restored' % N_METERS, 5)
    data = open(_state_path(term), 'rb').read()
    eq(data[11], 1, 'sealed flag')
    for k in keys:
        if k.encode() in data:
            raise Fail('the sealed state file holds the identity %s in clear' % k)
    _round(meters, gw, b'after-restart')
    eq(_hs(term), (N_METERS, N_METERS), 'terminator handshakes (completed, resumed)')

    # Another key cannot open it: ignored, full handshakes.
    eq(term.terminate(), 0, 'exit code')
    term.rc = None
    good = open(_state_path(term), 'rb').read()
    _write_cache_key(term, os.urandom(32))
    _expect_ignored(term, good, re.escape('sealed with another key, or damaged'), meters, gw)
    # One flipped bit under the right key: ignored too.
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 1
    _expect_ignored(term, bytes(flipped), re.escape('sealed with another key, or damaged'), meters, gw,
                    restart=True)


def _expect_ignored(term, content, why, meters, gw, restart=False):
    """Start the terminator on this state file: one log line says it is ignored
    and why; the daemon serves; the next handshake is a full one."""
    if restart:
        eq(term.terminate(), 0, 'exit code')
        term.rc = None
    path = _state_path(term)
    with open(path, 'wb') as f:
        f.write(content)
    os.chmod(path, 0o600)
    term.start()
    text = term.log_text()
    lines = [ln for ln in text.splitlines() if 'state file' in ln]
    eq(len(lines), 1, 'log lines about the state file (%r)' % lines)
    if not re.search(r'state file \S+: ignored: %s; every meter shakes hands in full' % why, lines[0]):
        raise Fail('state file log line %r does not say %r' % (lines[0], why))
    h.wait_until(lambda: gw.stats()['sessions'] == 0, 10, 'gateway sessions closed')
    _round(meters[:1], gw, b'after-%d' % time.monotonic_ns())
    eq(_hs(term), (1, 0), 'terminator handshakes (completed, resumed) with an ignored file')


def _reseal_crc(b):
    """An unsealed file with its CRC recomputed (so that only the change counts)."""
    b = bytearray(b[:-4])
    return bytes(b) + struct.pack('>I', zlib.crc32(bytes(b)) & 0xffffffff)


def test_damaged_foreign_truncated_or_stale_state_file_is_ignored(env):
    keys, meters, term, gw = _setup(env)
    eq(term.terminate(), 0, 'exit code')
    term.rc = None
    good = open(_state_path(term), 'rb').read()
    eq(good[:8], b'psktunST', 'magic')
    eq(good[11], 0, 'sealed flag (no key file)')
    # the gateway's own file, written at its stop
    eq(gw.terminate(), 0, 'gateway exit code')
    gw.rc = None
    gw_state = open(_state_path(gw), 'rb').read()
    gw.start()

    flipped = bytearray(good)
    flipped[HDR_LEN + 40] ^= 0x80
    old = bytearray(good)
    old[12:20] = struct.pack('>Q', int(time.time()) - 2 * 86400)
    cases = [
        (good[:len(good) - 7], 'damaged or truncated (its length does not match its header)'),
        (bytes(flipped), 'damaged (bad CRC)'),
        (gw_state, "a gateway's, not a terminator's"),
        (os.urandom(len(good)), 'not a psktun state file of this version'),
        (b'', 'too short or too long to be a state file'),
    ]
    cases = [(c, re.escape(w)) for c, w in cases]
    cases.append((_reseal_crc(bytes(old)), r'stale \(written 1728\d\d s ago\)'))
    for content, why in cases:
        h.log('state file case: %s' % why)
        _expect_ignored(term, content, why, meters, gw, restart=term.running())
    # and a good file again: resumed
    eq(term.terminate(), 0, 'exit code')
    term.rc = None
    with open(_state_path(term), 'wb') as f:
        f.write(good)
    term.start()
    h.wait_until(lambda: gw.stats()['sessions'] == 0, 10, 'gateway sessions closed')
    _round(meters, gw, b'good-again')
    # meter-0001 shook hands in full with each ignored file: the gateway holds
    # that last session's data, which the good file does not know
    eq(_hs(term), (N_METERS, N_METERS - 1), 'terminator handshakes (completed, resumed) with the good file')


def test_state_file_others_may_write_is_ignored(env):
    keys, meters, term, gw = _setup(env)
    eq(term.terminate(), 0, 'exit code')
    term.rc = None
    path = _state_path(term)
    os.chmod(path, 0o622)
    good = open(path, 'rb').read()
    term.start()
    lines = [ln for ln in term.log_text().splitlines() if 'state file' in ln]
    eq(len(lines), 1, 'log lines about the state file (%r)' % lines)
    if 'not sealed, it must be ours and written by us only' not in lines[0]:
        raise Fail('state file log line %r' % lines[0])
    del good


if __name__ == '__main__':
    h.main(globals())
