#!/usr/bin/env python3
"""packaging/grafana/psktun.json queries only what `psktunctl metrics` prints:
every psktun_* name in every PromQL expression of the dashboard (panels and
template variables) is printed by a running terminator and a running gateway,
counters only under rate()/increase() and gauges never; every drop reason is
on it; panels are well formed.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                         'packaging', 'grafana', 'psktun.json')


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(d):
    for p in d['panels']:
        yield p
        yield from p.get('panels', [])      # a collapsed row holds its panels


def expressions(d):
    """(where, PromQL) for every query on the dashboard."""
    for p in panels(d):
        for t in p.get('targets', []):
            yield 'panel %r %s' % (p['title'], t['refId']), t['expr']
    for v in d['templating']['list']:
        if v['type'] == 'query':
            q = v['query']['query'] if isinstance(v['query'], dict) else v['query']
            yield 'variable %s' % v['name'], q


def metrics_of(daemon):
    r = subprocess.run([h.psktunctl(), '-s', daemon.control, 'metrics'], capture_output=True, timeout=10)
    eq(r.returncode, 0, 'psktunctl metrics exit code')
    return dict(re.findall(r'^# TYPE (\w+) (counter|gauge)$', r.stdout.decode(), re.M))


def test_panels_are_well_formed(env):
    d = dashboard()
    ids = [p['id'] for p in panels(d)]
    eq(len(ids), len(set(ids)), 'unique panel ids')
    for p in panels(d):
        g = p['gridPos']
        if not (0 <= g['x'] and g['x'] + g['w'] <= 24 and g['h'] > 0):
            raise Fail('panel %r does not fit the 24-column grid: %r' % (p['title'], g))
        if p['type'] != 'row':
            eq(p['datasource'], {'type': 'prometheus', 'uid': '${DS_PROMETHEUS}'}, 'datasource of %r' % p['title'])
            if not p['targets']:
                raise Fail('panel %r has no query' % p['title'])
    for where, expr in expressions(d):
        for a, b in ('()', '{}', '[]'):
            if expr.count(a) != expr.count(b):
                raise Fail('%s: unbalanced %s in %r' % (where, a + b, expr))
        if '__name__' in expr:
            raise Fail('%s: a metric name by regex cannot be checked: %r' % (where, expr))


def test_every_metric_the_dashboard_queries_is_one_psktunctl_metrics_prints(env):
    h.psktund()
    keys = {'meter-0001': os.urandom(16)}
    m = env.meter(name='meter-0001')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr)
    eq(m.request(b'x', gw.addr), b'E:x', 'echo')
    printed = metrics_of(term)
    eq(metrics_of(gw), printed, 'the gateway prints the same metrics as the terminator')
    queried = set()
    for where, expr in expressions(dashboard()):
        for name in re.findall(r'\bpsktun_\w+', expr):
            if name not in printed:
                raise Fail('%s queries %s, which psktunctl metrics does not print' % (where, name))
            queried.add(name)
        for name, kind in printed.items():
            for mt in re.finditer(r'(\w*)\(\s*%s\b' % name, expr):
                under_rate = mt.group(1) in ('rate', 'irate', 'increase')
                if under_rate != (kind == 'counter'):
                    raise Fail('%s: %s %s inside %s()' % (where, kind, name, mt.group(1)))
            if kind == 'counter' and re.search(r'(?<!\()\b%s\b' % name, expr):
                raise Fail('%s: counter %s not under rate() or increase()' % (where, name))
    drops = sorted(n for n in printed if n.startswith('psktun_dropped_'))
    eq(sorted(n for n in queried if n.startswith('psktun_dropped_')), drops, 'drop reasons on the dashboard')
    for need in ('psktun_sessions', 'psktun_handshakes_completed_total', 'psktun_handshakes_resumed_total',
                 'psktun_handshakes_failed_total', 'psktun_records_in_total', 'psktun_records_out_total'):
        if need not in queried:
            raise Fail('the dashboard does not show %s' % need)
    h.log('the dashboard queries %d of the %d metrics: %s' % (len(queried), len(printed), sorted(queried)))
    print('%d metrics queried, all printed; not on the dashboard: %s'
          % (len(queried), sorted(set(printed) - queried)), flush=True)


if __name__ == '__main__':
    h.main(globals())
