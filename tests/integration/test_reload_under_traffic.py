#!/usr/bin/env python3
"""SIGHUP on both daemons while meters send continuously.

meters 1-4 -> gateway -> terminator -> echo, each asking every 0.1 s.  The
gateway's new configuration removes meter-0004 and adds meter-0005 (meter and
key); the terminator's new key file drops meter-0004's key and adds
meter-0005's; nothing changes for meters 1-3.  Both get SIGHUP under traffic.

  * meters 1-3 lose nothing: every request is answered at the first send,
    no new handshake anywhere (handshakes_started/completed unchanged), and
    per session: the terminator still sees each of them from the same
    gateway socket and the session's record counters kept counting.
  * meter-0004's session closes at both ends; its requests are dropped
    (dropped_unknown) and never answered.
  * meter-0005 is served after the reload (one new handshake).

Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
import resil  # noqa: E402

# The loopback loses nothing, so meters 1-3 send each request once and wait
# for its answer as long as it takes (a cap for a broken daemon): a request
# never answered is one the daemons lost.  How long answers took is printed,
# not asserted (a 2 s budget was).
EVERY = h.T
INTERVAL = 0.1


def _by_identity(sessions):
    return {s['identity']: s for s in sessions}


def test_sighup_both_daemons_under_traffic_loses_nothing_for_unchanged_meters(env):
    h.psktund()
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(5)}
    old = {k: keys[k] for k in ('meter-0001', 'meter-0002', 'meter-0003', 'meter-0004')}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, old, echo.addr)
    meters = {k: resil.RetryMeter(env, k) for k in keys}
    gw = h.gateway(env, old, [(k, meters[k].source) for k in old], term.addr)
    kept = [meters[k] for k in ('meter-0001', 'meter-0002', 'meter-0003')]
    m4, m5 = meters['meter-0004'], meters['meter-0005']
    for m in kept + [m4]:
        if not m.ask(b'%s/warmup' % m.name.encode(), gw.addr, 0.5, 20)['answered']:
            raise Fail('%s: warm-up unanswered' % m.name)
    g0, t0 = gw.stats(), term.stats()
    eq((g0['handshakes_started'], g0['handshakes_completed'], t0['handshakes_completed']),
       (4, 4, 4), 'handshakes before the reload (gateway started/completed, terminator)')
    tsess0, gsess0 = _by_identity(term.sessions()), _by_identity(gw.sessions())
    for m in kept + [m4]:
        m.results.clear()          # from here on: the requests under traffic
        m.got.clear()

    stop = threading.Event()
    threads, errors = resil.run_meters(kept, gw.addr, None, EVERY, 1, INTERVAL, stop, b'rl')
    stop4 = threading.Event()
    threads4, errors4 = resil.run_meters([m4], gw.addr, None, 0.3, 1, INTERVAL, stop4, b'rl')
    try:
        h.wait_until(lambda: all(len(m.results) >= 5 for m in kept + [m4]), h.T,
                     'traffic before the reload')
        # gateway: meter-0004 out, meter-0005 in
        gw.keys = {k: keys[k] for k in keys if k != 'meter-0004'}
        gw.meters = [(k, meters[k].source) for k in gw.keys]
        gw.write()
        mark = gw.log_mark()
        eq(gw.reload(), 'configuration reloaded', 'gateway reload')
        t_removed = time.monotonic()       # meter-0004's requests after this: unanswered
        m = re.search(rb'(\d+) sessions kept, (\d+) closed', gw.err.buf[mark:])
        eq((int(m.group(1)), int(m.group(2))), (3, 1), 'gateway: sessions kept, closed')
        # meter-0004's close_notify reached the terminator
        h.wait_until(lambda: sorted(_by_identity(term.sessions())) ==
                     ['meter-0001', 'meter-0002', 'meter-0003'], h.T,
                     'terminator sessions without meter-0004')
        # terminator: meter-0004's key out, meter-0005's in
        term.keys = {k: keys[k] for k in keys if k != 'meter-0004'}
        term.write()
        mark = term.log_mark()
        eq(term.reload(), 'configuration reloaded', 'terminator reload')
        m = re.search(rb'(\d+) sessions kept, (\d+) closed', term.err.buf[mark:])
        eq((int(m.group(1)), int(m.group(2))), (3, 0), 'terminator: sessions kept, closed')
        # traffic goes on across both reloads; then the new meter
        n_after = {mm.name: len(mm.results) for mm in kept}
        h.wait_until(lambda: all(len(mm.results) >= n_after[mm.name] + 5 for mm in kept), h.T,
                     'traffic after the reloads')
        r5 = m5.ask(b'meter-0005/new', gw.addr, 0.5, 20)
        if not r5['answered']:
            raise Fail('meter-0005 unanswered after the reload')
        d4 = gw.stats()['dropped_unknown']
        h.wait_until(lambda: gw.stats()['dropped_unknown'] >= d4 + 3, h.T,
                     'meter-0004 datagrams dropped_unknown')
    finally:
        stop.set()
        stop4.set()
        resil.join_all(threads, errors, EVERY + h.T)
        resil.join_all(threads4, errors4, h.T)

    # meters 1-3: every request answered at its first send, exactly their answers
    for mm in kept:
        late = [r['payload'] for r in mm.results if not r['answered'] or r['tries'] != 1]
        if late:
            raise Fail('%s: %d request(s) not answered at the first send: %r'
                       % (mm.name, len(late), late[:5]))
    resil.check_all_answered(kept)
    # meter-0004: answered before its removal, never for a request sent after
    # it (sent after the gateway's reload ended).  It waits 0.3 s for each
    # answer, so one before the removal may come too late for its ask(): only
    # what was sent after the removal is judged by time.
    m4.drain(0.2)
    m4_before = [r for r in m4.results if r['t_sent'] <= t_removed]
    m4_after = [r for r in m4.results if r['t_sent'] > t_removed]
    if not any(r['answered'] for r in m4_before):
        raise Fail('meter-0004 was never answered before its removal')
    if not m4_after:
        raise Fail('meter-0004 sent nothing after its removal')
    if any(r['answered'] for r in m4_after):
        raise Fail('meter-0004 was answered after its removal')
    if any(p not in {m4.prefix + r['payload'] for r in m4_before} | {b'E:meter-0004/warmup'}
           for p in m4.answers()):
        raise Fail('meter-0004 got an answer to a request sent after its removal')

    g, t = gw.stats(), term.stats()
    # one new handshake (meter-0005), at each end; nothing else
    eq((g['handshakes_started'], g['handshakes_completed'], g['handshakes_failed'], g['sessions']),
       (5, 5, 0, 4), 'gateway handshakes started/completed/failed, sessions')
    eq((t['handshakes_completed'], t['handshakes_failed'], t['sessions']), (5, 0, 4),
       'terminator handshakes completed/failed, sessions')
    # per session: same gateway socket at the terminator, counters that kept counting
    tsess, gsess = _by_identity(term.sessions()), _by_identity(gw.sessions())
    eq(sorted(tsess), ['meter-0001', 'meter-0002', 'meter-0003', 'meter-0005'],
       'terminator sessions after the reloads')
    eq(sorted(gsess), ['meter-0001', 'meter-0002', 'meter-0003', 'meter-0005'],
       'gateway sessions after the reloads')
    for mm in kept:
        k = mm.name
        eq(tsess[k]['peer'], tsess0[k]['peer'], '%s: terminator session peer (gateway socket)' % k)
        eq(tsess[k]['state'], 'established', '%s: terminator session state' % k)
        n = len(mm.results)
        for side, now, before in (('gateway', gsess[k], gsess0[k]), ('terminator', tsess[k], tsess0[k])):
            eq(int(now['plain_in']) - int(before['plain_in']), n,
               '%s: %s session plain_in since before the reload' % (k, side))
            eq(int(now['plain_out']) - int(before['plain_out']), n,
               '%s: %s session plain_out since before the reload' % (k, side))
    print('reload under traffic: meters 1-3 sent %s requests across both SIGHUPs, all answered '
          'at the first send (latency %s); meter-0004 removed (%d of %d answered before, %d '
          'dropped after), meter-0005 added and answered; gateway handshakes_started %d -> %d' % (
              '/'.join(str(len(mm.results)) for mm in kept),
              resil.stats_line([r['latency'] for mm in kept for r in mm.results], 'ms', 1000),
              sum(1 for r in m4_before if r['answered']), len(m4_before), len(m4_after),
              g0['handshakes_started'],
              g['handshakes_started']), flush=True)


if __name__ == '__main__':
    h.main(globals())
