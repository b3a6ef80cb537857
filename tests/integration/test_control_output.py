#!/usr/bin/env python3
"""Control output cannot be forged (issue 11 item 4): an identity holding
space, '=', '"' or '\\' is one quoted, escaped field in `psktunctl sessions`
and one token in the log, at both ends; `psktunctl metrics` is valid
Prometheus text line by line. (A key file refuses control characters in an
identity, newline included: tests/unit/test_keys.c; the quoting of every
byte is tests/unit/test_log.c.)
Exit 0: all passed, 1: a test failed, 77: psktund or psktunctl missing."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

# identity -> how every output must print it
IDENTITIES = {
    'meter-A state=established peer=6.6.6.6 x': r'"meter-A state=established peer=6.6.6.6 x"',
    'say "hi"': r'"say \"hi\""',
    'back\\slash': r'"back\\slash"',
    'eq=ual': r'"eq=ual"',
    'meter-0001': 'meter-0001',
}
METRIC_TYPE = re.compile(r'# TYPE (psktun_[a-z0-9_]+) (counter|gauge)')
METRIC_SAMPLE = re.compile(r'(psktun_[a-z0-9_]+)(?:\{reason="[a-z0-9_]+"\})? (0|[1-9][0-9]*)')


def session_line_rx(quoted, peer):
    return re.compile(r'tunnel=t1 identity=%s state=established peer=%s last_activity_s=\d+ '
                      r'plain_in=1 plain_out=1 records_in=\d+ records_out=\d+'
                      % (re.escape(quoted), re.escape(peer)))


def check_metrics(d):
    """Every line is a TYPE line followed by its samples (one, or one per
    reason label for a family such as handshake_failures): nothing else."""
    r = subprocess.run([h.psktunctl(), '-s', d.control, 'metrics'], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    eq((r.returncode, r.stderr), (0, b''), '%s: psktunctl metrics exit code, stderr' % d.name)
    lines = r.stdout.decode('ascii').split('\n')
    eq(lines[-1], '', 'metrics end with a newline')
    lines = lines[:-1]
    i = 0
    while i < len(lines):
        mt = METRIC_TYPE.fullmatch(lines[i])
        samples = []
        i += 1
        while i < len(lines) and not lines[i].startswith('#'):
            samples.append(lines[i])
            i += 1
        labelled = [s for s in samples if '{' in s]
        ok = mt and samples and (len(samples) == 1 or len(labelled) == len(samples))
        for sample in samples:
            ms = METRIC_SAMPLE.fullmatch(sample)
            ok = ok and ms and ms.group(1) == mt.group(1)
        if not ok:
            raise Fail('%s: not valid exposition text: %r, %r' % (d.name, lines[i - 1 - len(samples)],
                                                                    samples))


def test_identities_with_space_equals_quote_backslash_cannot_forge_fields(env):
    h.psktund()
    h.psktunctl()
    keys = {i: os.urandom(16) for i in IDENTITIES}
    meters = {i: env.meter(name='m%d' % n) for n, i in enumerate(IDENTITIES)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [(i, m.source) for i, m in meters.items()], term.addr)
    for i, m in meters.items():
        eq(m.request(b'hello', gw.addr), b'E:hello', 'echo for %r' % i)

    for d in (gw, term):
        out = d.ctl('sessions')
        lines = out.splitlines()
        eq(len(lines), len(IDENTITIES), '%s: one sessions line a meter' % d.name)
        for i, quoted in IDENTITIES.items():
            if d is gw:
                peer = meters[i].source
            else:
                peer = [s['peer'] for s in d.sessions() if s['identity'] == i]
                eq(len(peer), 1, '%s: sessions parsed back to identity %r' % (d.name, i))
                peer = peer[0]
            rx = session_line_rx(quoted, peer)
            hits = [line for line in lines if rx.fullmatch(line)]
            if len(hits) != 1:
                raise Fail('%s: no sessions line with identity=%s peer=%s in:\n%s'
                           % (d.name, quoted, peer, out))
        eq(sorted(s['identity'] for s in d.sessions()), sorted(IDENTITIES),
           '%s: identities parsed back from sessions' % d.name)
        for quoted in IDENTITIES.values():
            d.wait_log(r'tunnel t1: session %s up \(' % re.escape(quoted))
        check_metrics(d)


if __name__ == '__main__':
    h.main(globals())
