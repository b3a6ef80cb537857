#!/usr/bin/env python3
"""agent/README.md is true of the code: it lists every agent/*.c and *.h with its layer;
calls, read from the built objects, go only to the same layer or a lower one; the
#include graph has no cycle except through an interface header the page names; the
session layer asks no question about roles and calls nothing in gateway.c,
terminator.c, plugin.c or host.c.
Exit 0: all passed, 1: a check failed, 77: no build to read the objects of."""

import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
AGENT = os.path.join(SRC, 'agent')


def read(path):
    with open(path) as f:
        return f.read()


def readme():
    """(layers in order from the top, {file: layer}, set of interface headers)."""
    text = read(os.path.join(AGENT, 'README.md'))
    layers = re.findall(r'^\d+\. \*\*([a-z]+)\*\*', text, re.M)
    files = dict(re.findall(r'^\| `([\w.]+)` \| ([a-z]+) \|', text, re.M))
    iface = set(re.findall(r'^- `([\w.]+\.h)`:', text, re.M))
    if not layers or not files or not iface:
        raise Fail('agent/README.md: no layer list, file table or interface headers found')
    return layers, files, iface


def test_every_file_is_listed_with_a_known_layer(env):
    layers, files, _ = readme()
    have = sorted(f for f in os.listdir(AGENT) if f.endswith(('.c', '.h')))
    eq([f for f in have if f not in files], [], 'agent/ files missing from agent/README.md')
    eq([f for f in files if f not in have], [], 'agent/README.md lists files that do not exist')
    eq({f: l for f, l in files.items() if l not in layers}, {}, 'files in no listed layer')


def includes(path):
    return [i for i in re.findall(r'^#include "([\w./]+)"', read(path), re.M)
            if os.path.exists(os.path.join(AGENT, i))]


def module(name):
    """The .c a header belongs to (pluginhost.h: plugin.c), for the layer of a header."""
    stem = name.rsplit('.', 1)[0]
    return {'pluginhost': 'plugin'}.get(stem, stem)


def find_cycle(edges):
    """One cycle of the graph {node: set(nodes)} as a list, or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                c = visit(w)
                if c:
                    return c
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state:
            c = visit(v)
            if c:
                return c
    return None


def test_no_include_cycle_but_through_an_interface_header(env):
    _, _, iface = readme()
    edges = {}
    for f in os.listdir(AGENT):
        if not f.endswith(('.c', '.h')):
            continue
        for i in includes(os.path.join(AGENT, f)):
            if i in iface or module(i) == module(f):
                continue
            edges.setdefault(module(f), set()).add(module(i))
    eq(find_cycle(edges), None, 'an #include cycle among agent/ files (module -> module)')
    headers = {f: set(includes(os.path.join(AGENT, f))) for f in os.listdir(AGENT) if f.endswith('.h')}
    eq(find_cycle(headers), None, 'headers that include each other')


def test_a_file_includes_upward_only_interface_headers(env):
    layers, files, iface = readme()
    rank = {l: n for n, l in enumerate(layers)}
    up = []
    for f, layer in files.items():
        for i in includes(os.path.join(AGENT, f)):
            if i in iface or i not in files:
                continue
            if rank[files[i]] < rank[layer]:
                up.append('%s (%s) includes %s (%s)' % (f, layer, i, files[i]))
    eq(up, [], 'includes of a higher layer\'s header that is no interface header')


def objects():
    top = os.environ.get('PLUGIN_BUILD_DIR')
    if not top:
        raise h.Skip('PLUGIN_BUILD_DIR not set: no build to read the objects of')
    h.need('nm')
    objs = glob.glob(os.path.join(top, 'agent', '.libs', '*.o')) + glob.glob(os.path.join(top, 'agent', '*.o'))
    out = {}
    for o in objs:
        name = re.sub(r'^[\w]+?-', '', os.path.basename(o))[:-2] + '.c'  # libpsktund_la-session.o
        out[name] = o
    if 'session.c' not in out or 'gateway.c' not in out:
        raise Fail('no objects of agent/ under %s/agent' % top)
    return out


_calls = {}


def calls():
    """{caller.c: {callee.c: set(functions)}}: calls between files, from the objects."""
    if not _calls:
        _calls.update(read_calls())
    return _calls


def read_calls():
    defined, undefined = {}, {}
    for src, o in objects().items():
        r = subprocess.run(['nm', o], capture_output=True, text=True, timeout=30)
        eq(r.returncode, 0, 'nm %s' % o)
        for line in r.stdout.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] == 'T':
                defined[p[2]] = src
            elif len(p) == 2 and p[0] == 'U':
                undefined.setdefault(src, set()).add(p[1])
    out = {}
    for src, syms in undefined.items():
        for s in syms:
            if s in defined and defined[s] != src:
                out.setdefault(src, {}).setdefault(defined[s], set()).add(s)
    return out


def test_calls_go_down_only(env):
    layers, files, _ = readme()
    rank = {l: n for n, l in enumerate(layers)}
    up = []
    for a, callees in sorted(calls().items()):
        for b, syms in sorted(callees.items()):
            if a in files and b in files and rank[files[b]] < rank[files[a]]:
                up.append('%s (%s) calls %s (%s): %s' % (a, files[a], b, files[b], ' '.join(sorted(syms))))
    eq(up, [], 'calls up into a higher layer')


def test_the_session_knows_no_role(env):
    src = read(os.path.join(AGENT, 'session.c'))
    eq(re.findall(r'->mode\b|PSKTUN_MODE_\w+', src), [], 'session.c reads the mode')
    eq([i for i in includes(os.path.join(AGENT, 'session.c')) if i in ('gateway.h', 'pluginhost.h')], [],
       'session.c includes a role\'s or the plugin host\'s header')
    called = calls().get('session.c', {})
    eq(sorted(f for f in called if f in ('gateway.c', 'terminator.c', 'plugin.c', 'host.c')), [],
       'session.c calls into a role or the plugin host')


def test_below_the_roles_no_tunnel_asks_its_mode(env):
    layers, files, _ = readme()
    below = layers[layers.index('roles') + 1:]
    asks = []
    for f, layer in sorted(files.items()):
        if layer in below and f.endswith('.c'):
            for n, line in enumerate(read(os.path.join(AGENT, f)).splitlines(), 1):
                if re.search(r'\b(?:s->t|t)->mode\b(?!\s*=[^=])', line):
                    asks.append('%s:%d: %s' % (f, n, line.strip()))
    eq(asks, [], 'a tunnel\'s mode read below the roles (role.h has its table)')


def test_every_session_state_change_goes_through_one_function(env):
    writes = []
    for f in sorted(os.listdir(AGENT)):
        if f.endswith('.c'):
            for n, line in enumerate(read(os.path.join(AGENT, f)).splitlines(), 1):
                if re.search(r'->state\s*=[^=]', line) and 'SESSION_' in line:
                    writes.append('%s:%d: %s' % (f, n, line.strip()))
    eq(writes, [], 'session states set elsewhere than session_set_state()')
    eq(len(re.findall(r'\bs->state = st;', read(os.path.join(AGENT, 'session.c')))), 1,
       'session_set_state() sets the state')


if __name__ == '__main__':
    h.main(globals())
