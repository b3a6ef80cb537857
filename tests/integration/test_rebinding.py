#!/usr/bin/env python3
"""Dead paths: NAT rebinding and terminator restarts under traffic.

meters -> gateway -> badlink -> psktund terminator -> echo, every meter
asking continuously (a request every 0.2 s, resent every 0.5 s until
answered, up to a bound):

  * badlink rebinds every flow (a fresh upstream source port, the old one
    closed, as a carrier NAT does) every 2.5 s: no request ends unanswered;
    the terminator's lost-session alert makes the gateway shake hands again
    (resumed) at once; prints the time from each rebind to each meter's next
    answer.
  * the terminator is killed (SIGKILL) and restarted on the same port 2 s
    later (meanwhile the meters' requests go unanswered and are retried): no
    request ends unanswered; prints the recovery time.
  * the terminator stops gracefully (SIGTERM): its close_notify reaches the
    gateway (every gateway session closes), and after a restart every
    meter is answered again.

Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from badlink import BadLink  # noqa: E402
import resil  # noqa: E402

N_METERS = 4
# Short handshake timers: a handshake that started towards a dead path gives
# up soon and backs off (2 s, jittered, doubling) instead of waiting 120 s.
DTLS = {'retransmit_ms': 250, 'handshake_timeout_s': 4}
EVERY = 0.5          # a meter resends an unanswered request after this long
TRIES = 120          # ... at most this many times (60 s: a cap for a broken daemon;
                     # a rehandshake that fails, 4 s, then backs off, 2 s and more,
                     # is slow but correct; the recovery times are printed)
INTERVAL = 0.2       # and asks again this long after an answer
DOWN_S = 2.0         # how long the terminator stays down before its restart


def _setup(env, n=N_METERS):
    h.psktund()
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(n)}
    echo = env.echo(prefix=b'E:')
    # restarted on the same port (restart_run): one no port-0 bind can take meanwhile
    term = h.terminator(env, keys, echo.addr, dtls=dict(DTLS), port=h.stable_udp_port())
    bl = BadLink(upstream=(h.LO, term.port), max_flows=1024)
    env.defer(bl.stop)
    meters = [resil.RetryMeter(env, k) for k in keys]
    gw = h.gateway(env, keys, [(k, m.source) for k, m in zip(keys, meters)],
                   '%s:%d' % bl.listen_addr, dtls=dict(DTLS))
    # every meter's session is up before the path is disturbed
    for m in meters:
        r = m.ask(b'%s/warmup' % m.name.encode(), gw.addr, EVERY, TRIES)
        if not r['answered']:
            raise Fail('%s: warm-up request unanswered' % m.name)
    gw.wait_stat('handshakes_completed', n)
    return keys, meters, term, bl, gw


def next_answer_after(meters, t):
    """For each meter, seconds from t to its first answer after t (None: none)."""
    out = []
    for m in meters:
        ts = [r['t_answer'] for r in m.results if r['answered'] and r['t_answer'] > t]
        out.append(min(ts) - t if ts else None)
    return out


def _traffic(meters, gw, tag):
    stop = threading.Event()
    threads, errors = resil.run_meters(meters, gw.addr, None, EVERY, TRIES, INTERVAL, stop, tag)
    return stop, threads, errors


def _stop_traffic(stop, threads, errors, meters):
    stop.set()
    resil.join_all(threads, errors, EVERY * TRIES + 10)
    resil.check_all_answered(meters)


def rebinding_run(env, n_rebinds=5, period=2.5, quiet=False):
    keys, meters, term, bl, gw = _setup(env)
    g0 = gw.stats()
    stop, threads, errors = _traffic(meters, gw, b'rb')
    rebinds = []
    try:
        for i in range(n_rebinds):
            stop.wait(period)          # the NAT's pace, not a wait for a condition
            changed = bl.rebind()
            rebinds.append(time.monotonic())
            h.log('rebind %d: %r' % (i + 1, changed))
        # until every meter was answered after the last rebind
        h.wait_until(lambda: all(x is not None for x in next_answer_after(meters, rebinds[-1])),
                     EVERY * TRIES, 'every meter answered after the last rebind')
    finally:
        _stop_traffic(stop, threads, errors, meters)
    rec = [x for t in rebinds for x in next_answer_after(meters, t)]
    g, t = gw.stats(), term.stats()
    s = resil.summary(meters)
    if not quiet:
        print('rebinding every %.1fs x %d, %d meters: %d requests, all answered, first try %d '
              '(%.0f%%); time from a rebind to the meter\'s next answer: %s; gateway '
              'rehandshakes %d, handshakes resumed %d/%d; terminator lost_session_alerts %d' % (
                  period, n_rebinds, len(meters), s['requests'], s['first_try'],
                  resil.pct(s['first_try'], s['requests']), resil.stats_line(rec),
                  g['rehandshakes'] - g0['rehandshakes'],
                  g['handshakes_resumed'] - g0['handshakes_resumed'],
                  g['handshakes_completed'] - g0['handshakes_completed'],
                  t['lost_session_alerts']), flush=True)
    return dict(recovery=rec, gw=g, gw0=g0, term=t, meters=meters, keys=keys, gw_daemon=gw,
                term_daemon=term, summary=s)


def test_rebinding_every_few_seconds_leaves_no_request_unanswered(env):
    r = rebinding_run(env)
    g, g0, t = r['gw'], r['gw0'], r['term']
    if None in r['recovery']:
        raise Fail('a meter had no answer after a rebind: %r' % r['recovery'])
    # the path died at every rebind for every meter; each time the gateway
    # shook hands again, and resumed
    if g['rehandshakes'] - g0['rehandshakes'] < N_METERS:
        raise Fail('gateway rehandshakes %d, want >= %d' % (g['rehandshakes'] - g0['rehandshakes'],
                                                            N_METERS))
    if t['lost_session_alerts'] < 1:
        raise Fail('the terminator sent no lost-session alert')
    eq(g['handshakes_failed'], 0, 'gateway handshakes_failed')
    if g['handshakes_resumed'] - g0['handshakes_resumed'] < 1:
        raise Fail('no rehandshake was a resumption')
    # one session per meter at each end (the old terminator sessions were replaced)
    eq(sorted(s['identity'] for s in r['gw_daemon'].established()), sorted(r['keys']),
       'gateway established sessions')
    h.wait_until(lambda: sorted(s['identity'] for s in r['term_daemon'].sessions())
                 == sorted(r['keys']), h.T, 'one terminator session per meter')


def restart_run(env, kill=True, down_s=DOWN_S, quiet=False):
    keys, meters, term, bl, gw = _setup(env)
    g0 = gw.stats()
    stop, threads, errors = _traffic(meters, gw, b'rs')
    try:
        # traffic flows, then the terminator goes away
        t_mark = time.monotonic()
        h.wait_until(lambda: all(x is not None for x in next_answer_after(meters, t_mark)),
                     h.T, 'traffic before the restart')
        if kill:
            t_down, t_ready = resil.kill_and_restart(term, down_s)
        else:
            t_down = resil.graceful_stop(term)
            # close_notify reached the gateway: every session there closed
            h.wait_until(lambda: gw.stats()['sessions_closed'] - g0['sessions_closed'] >= len(keys),
                         h.T, 'gateway sessions closed by the peer')
            closed_by_peer = gw.log_text().count('closed by peer')
            t_ready = resil.restart(term, t_down + down_s)
        h.wait_until(lambda: all(x is not None for x in next_answer_after(meters, t_ready)),
                     EVERY * TRIES, 'every meter answered after the restart')
    finally:
        _stop_traffic(stop, threads, errors, meters)
    from_ready = next_answer_after(meters, t_ready)
    from_down = next_answer_after(meters, t_down)
    g, t = gw.stats(), term.stats()
    if not quiet:
        print('terminator %s and restart (down %.0f ms), %d meters: all %d requests answered; '
              'time from restart (ready) to the meter\'s next answer: %s; from the %s: %s; '
              'gateway rehandshakes %d, handshakes %d (resumed %d); terminator after restart: '
              'handshakes_completed %d, resumed %d, lost_session_alerts %d' % (
                  'kill -9' if kill else 'SIGTERM', (t_ready - t_down) * 1000, len(meters),
                  resil.summary(meters)['requests'], resil.stats_line(from_ready),
                  'kill' if kill else 'SIGTERM', resil.stats_line(from_down),
                  g['rehandshakes'] - g0['rehandshakes'],
                  g['handshakes_completed'] - g0['handshakes_completed'],
                  g['handshakes_resumed'] - g0['handshakes_resumed'], t['handshakes_completed'],
                  t['handshakes_resumed'], t['lost_session_alerts']), flush=True)
    out = dict(from_ready=from_ready, from_down=from_down, gw=g, gw0=g0, term=t, keys=keys,
               gw_daemon=gw, term_daemon=term)
    if not kill:
        out['closed_by_peer'] = closed_by_peer
    return out


def test_terminator_kill_and_restart_leaves_no_request_unanswered(env):
    r = restart_run(env, kill=True)
    t = r['term']
    # the restarted terminator lost its session cache: full handshakes, one per meter
    eq((t['sessions'], t['handshakes_completed'], t['handshakes_resumed']), (N_METERS, N_METERS, 0),
       'restarted terminator sessions, handshakes_completed, handshakes_resumed')
    if t['lost_session_alerts'] < 1:
        raise Fail('the restarted terminator sent no lost-session alert')
    eq(sorted(s['identity'] for s in r['gw_daemon'].established()), sorted(r['keys']),
       'gateway established sessions')


def test_terminator_graceful_restart_close_notify_reaches_gateway(env):
    r = restart_run(env, kill=False)
    if r['closed_by_peer'] < N_METERS:
        raise Fail('gateway logged %d sessions closed by peer, want %d'
                   % (r['closed_by_peer'], N_METERS))
    t = r['term']
    eq((t['sessions'], t['handshakes_completed']), (N_METERS, N_METERS),
       'restarted terminator sessions, handshakes_completed')
    eq(sorted(s['identity'] for s in r['gw_daemon'].established()), sorted(r['keys']),
       'gateway established sessions')


if __name__ == '__main__':
    h.main(globals())
