#!/usr/bin/env python3
"""SIGHUP: an unchanged session survives a reload without a new handshake,
a removed meter's session closes (close_notify: the terminator drops it
too), a broken configuration leaves the old one running; `psktunctl reload`
does the same as SIGHUP.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402


def _setup(env, n=2):
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(n)}
    meters = [env.meter(name=k) for k in keys]
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [(k, m.source) for k, m in zip(keys, meters)], term.addr)
    for m in meters:
        eq(m.request(b'up:' + m.name.encode(), gw.addr), b'E:up:' + m.name.encode(), m.name)
    eq(gw.stats()['handshakes_completed'], n, 'gateway handshakes_completed before reload')
    return keys, meters, echo, term, gw


def test_sighup_keeps_unchanged_sessions(env):
    h.psktund()
    keys, (m1, m2), echo, term, gw = _setup(env)
    # Same meters, one more meter and a new key: nothing the two sessions use changed.
    m3 = env.meter(name='meter-0003')
    gw.keys['meter-0003'] = os.urandom(16)
    gw.meters.append(('meter-0003', m3.source))
    gw.write()
    eq(gw.reload(), 'configuration reloaded', 'reload outcome')
    eq(gw.stats()['sessions'], 2, 'gateway sessions after reload')
    eq(m1.request(b'after-1', gw.addr), b'E:after-1', 'meter-0001 after reload')
    eq(m2.request(b'after-2', gw.addr), b'E:after-2', 'meter-0002 after reload')
    g, t = gw.stats(), term.stats()
    eq((g['handshakes_started'], g['handshakes_completed'], g['sessions']), (2, 2, 2),
       'gateway handshakes_started, handshakes_completed, sessions')
    eq((t['handshakes_completed'], t['sessions']), (2, 2), 'terminator handshakes_completed, sessions')
    # an unchanged reload by psktunctl too
    mark = gw.log_mark()
    eq(gw.ctl('reload').strip(), 'reload=done', 'psktunctl reload')
    gw.wait_log(r'configuration reloaded', start=mark)
    eq(m1.request(b'after-ctl', gw.addr), b'E:after-ctl', 'meter-0001 after psktunctl reload')
    eq(gw.stats()['handshakes_completed'], 2, 'gateway handshakes_completed after psktunctl reload')


def test_sighup_removing_a_meter_closes_its_session(env):
    h.psktund()
    keys, (m1, m2), echo, term, gw = _setup(env)
    gw.meters = [mm for mm in gw.meters if mm[0] != 'meter-0002']
    gw.write()
    eq(gw.reload(), 'configuration reloaded', 'reload outcome')
    h.wait_until(lambda: [s['identity'] for s in gw.sessions()] == ['meter-0001'],
                 what='gateway sessions == [meter-0001]')
    # the terminator got close_notify for meter-0002
    h.wait_until(lambda: [s['identity'] for s in term.sessions()] == ['meter-0001'],
                 what='terminator sessions == [meter-0001]')
    before = gw.stats()
    m2.send(b'removed', gw.addr)
    gw.wait_stat('dropped_unknown', before['dropped_unknown'] + 1)
    eq(m1.request(b'still-here', gw.addr), b'E:still-here', 'meter-0001 after reload')
    eq(m2.pending(), [], 'replies to the removed meter')
    eq(gw.stats()['handshakes_completed'], 2, 'gateway handshakes_completed')
    eq(echo.payloads()[-1], b'still-here', 'last backend payload')
    if b'removed' in echo.payloads():
        raise Fail('the removed meter reached the backend')


def test_terminator_reload_closes_exactly_the_sessions_whose_key_went_or_changed(env):
    """The commit looks only at the identities whose key went or changed (found
    off the loop): those sessions close, the others stay, and `show` forgets
    the identity that left the key file."""
    h.psktund()
    keys, meters, echo, term, gw = _setup(env, n=3)
    term.keys['meter-0001'] = os.urandom(16)        # another key
    del term.keys['meter-0002']                     # gone
    term.keys['meter-0004'] = os.urandom(16)        # new: changes nothing running
    term.write()
    eq(term.reload(), 'configuration reloaded', 'reload outcome')
    h.wait_until(lambda: [s['identity'] for s in term.sessions()] == ['meter-0003'],
                 what='terminator sessions == [meter-0003]')
    term.wait_log(r'configuration reloaded: 1 tunnels, 3 keys; 1 sessions kept, 2 closed')
    shown = [line.split('\t')[2] for line in term.ctl('show', '--dump').splitlines()
             if line.startswith('meter\t')]
    eq(shown, ['meter-0001', 'meter-0003', 'meter-0004'], 'identities show lists after the reload')
    eq(meters[2].request(b'still-3', gw.addr), b'E:still-3', 'meter-0003 after the reload')
    eq(term.stats()['handshakes_completed'], 3, 'terminator handshakes_completed')


def test_broken_config_on_reload_keeps_old_one(env):
    h.psktund()
    keys, (m1, m2), echo, term, gw = _setup(env)
    good_text = gw.config()
    for broken in ('mode = "gateway";\nthis is not libconfig\n',
                   good_text + 'no_such_setting = 1;\n'):
        gw.write(broken)
        eq(gw.reload(), 'reload failed', 'reload outcome for a broken config')
        eq(m1.request(b'still-1', gw.addr), b'E:still-1', 'meter-0001 after a failed reload')
        eq(m2.request(b'still-2', gw.addr), b'E:still-2', 'meter-0002 after a failed reload')
    # a key file others may read is refused on reload too
    gw.write()
    os.chmod(gw.keyfile, 0o644)
    eq(gw.reload(), 'reload failed', 'reload outcome for a world-readable key file')
    eq(m1.request(b'still-3', gw.addr), b'E:still-3', 'meter-0001 after a refused key file')
    g = gw.stats()
    eq((g['sessions'], g['handshakes_completed'], g['handshakes_failed']), (2, 2, 0),
       'gateway sessions, handshakes_completed, handshakes_failed')
    if not gw.running():
        raise Fail('gateway exited')
    os.chmod(gw.keyfile, 0o600)


if __name__ == '__main__':
    h.main(globals())
