#!/usr/bin/env python3
"""The documentation says what the code does: -h/--help on both programs;
psktun.conf(5) gives the code's default priority string, and every setting
the parser accepts (agent/config.c, plugins/*/*.c) with its range and default;
psktunctl(8) lists every key `psktunctl stats` prints and every gauge of
`psktunctl metrics`, read from a running daemon; the man pages render the
commands they show.
Exit 0: all passed, 1: a test failed, 77: psktund or man missing."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
CONF5 = os.path.join(SRC, 'etc', 'psktun.conf.5')
CTL8 = os.path.join(SRC, 'agent', 'psktunctl.8')


def read(*p):
    with open(os.path.join(SRC, *p)) as f:
        return f.read()


def render(path):
    """The man page as `man` shows it, on lines long enough not to wrap."""
    h.need('man')
    r = subprocess.run(['man', '-l', path], capture_output=True, timeout=30,
                       env=dict(os.environ, MANWIDTH='250', MANPAGER='cat', PAGER='cat', LANG='C.UTF-8'))
    eq(r.returncode, 0, 'man -l %s exit code' % path)
    return r.stdout.decode('utf-8', 'replace')


def unroff(s):
    """Roff source text as it reads: escapes and font changes undone."""
    s = s.replace('\\-', '-').replace('\\(dq', '"').replace('\\e', '\\').replace('\\&', '')
    return re.sub(r'\\f[BIRP]', '', s)


def man_entries(src):
    """{(section, name): description} of every `.BR name " (description)"` entry;
    section is the .SH heading, and the .SS one under it when there is one."""
    out, sh, ss = {}, None, None
    for line in src.splitlines():
        if line.startswith('.SH '):
            sh, ss = line[4:].strip().strip('"'), None
        elif line.startswith('.SS '):
            ss = line[4:].strip()
        m = re.match(r'\.BR (\w+) " \((.*)\)"$', line)
        if m:
            out[(sh, ss, m.group(1))] = unroff(m.group(2))
    return out


def c_string_macro(text, name):
    m = re.search(r'#define %s\s*\\?\s*((?:"[^"]*"\s*)+)' % name, text)
    if not m:
        raise Fail('no #define %s' % name)
    return ''.join(re.findall(r'"([^"]*)"', m.group(1)))


def c_function(text, name):
    m = re.search(r'\n(?:static )?[\w ]+\*?\b%s\([^)]*\)\n\{\n(.*?)\n\}\n' % name, text, re.S)
    if not m:
        raise Fail('no function %s' % name)
    return m.group(1)


def test_help_on_both_programs(env):
    for prog in (h.psktund(), h.psktunctl()):
        for flag in ('-h', '--help'):
            r = subprocess.run([prog, flag], capture_output=True, timeout=10)
            eq((r.returncode, r.stderr), (0, b''), '%s %s: exit code, stderr' % (os.path.basename(prog), flag))
            if not r.stdout.startswith(b'usage: ' + os.path.basename(prog).encode()):
                raise Fail('%s %s printed %r' % (prog, flag, r.stdout[:80]))


def test_default_priority_string_is_the_codes(env):
    want = c_string_macro(read('agent', 'config.h'), 'PSKTUN_DEFAULT_PRIORITY')
    lines = [ln.strip() for ln in render(CONF5).splitlines()]
    i = next((i for i, ln in enumerate(lines) if ln.startswith('NONE:')), None)
    if i is None:
        raise Fail('no priority string in psktun.conf(5)')
    got = lines[i]
    while not got.endswith(want[-10:]) and len(got) < len(want) and lines[i + 1]:
        i += 1
        got += lines[i]
    eq(got, want, 'default priority string in psktun.conf(5)')
    tickets = c_string_macro(read('agent', 'config.h'), 'PSKTUN_TICKETS_PRIORITY')
    eq(tickets + ':%NO_TICKETS', want, 'tickets = true: the default without %NO_TICKETS')


def test_the_commands_the_man_pages_show_render_as_written(env):
    text = render(CONF5)
    if "head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \\n'." not in text:
        raise Fail('the ticket key command renders as %r' %
                   [ln for ln in text.splitlines() if 'urandom' in ln])
    r = subprocess.run("head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \\n'", shell=True,
                       capture_output=True, timeout=10)
    if not re.fullmatch(rb'[0-9a-f]{128}', r.stdout):
        raise Fail('the command makes %r, not 128 hex digits' % r.stdout)


# Which psktun.conf(5) section documents the settings a loader function accepts.
SECTIONS = {'load_root': 'TOP-LEVEL SETTINGS', 'load_tunnel': 'TUNNELS',
            'load_meter': 'METERS', 'load_dtls': 'DTLS'}
GROUPS = {'tunnels', 'meters', 'dtls', 'options'}


def test_every_setting_with_its_range_and_default_is_in_psktun_conf_5(env):
    code = read('agent', 'config.c')
    entries = man_entries(read('etc', 'psktun.conf.5'))
    defaults = dict(re.findall(r'\bd->(\w+) = (\d+);', c_function(code, 'set_defaults')))
    defaults.update(re.findall(r'\bc->(\w+) = (\d+);\n\tget_uint', code))       # workers
    m = re.search(r'max_handshakes = c->mode == PSKTUN_MODE_GATEWAY \? (\d+) : (\d+);', code)
    mode_defaults = {'max_handshakes': 'default %s on a gateway, %s on a terminator' % m.groups()}
    booleans = set(re.findall(r"'(\w+)' must be true or false", code))          # calloc: false
    checked = []
    for fn, section in SECTIONS.items():
        body = c_function(code, fn)
        known = re.search(r'known\[\] = \{(.*?)NULL', body, re.S).group(1)
        for name in re.findall(r'"(\w+)"', known):
            desc = entries.get((section, None, name))
            if desc is None:
                raise Fail('%s (accepted by %s) is not under %s in psktun.conf(5)' % (name, fn, section))
            checked.append(name)
            if name in GROUPS:
                continue
            rng = re.search(r'get_uint\(l, \w+, "%s", (\d+), ([\d *]+), ' % name, body)
            if rng:
                lo, hi = int(rng.group(1)), eval(rng.group(2), {})   # "86400 * 7"
                if '%d to %d' % (lo, hi) not in desc:
                    raise Fail('%s: code accepts %d to %d; psktun.conf(5) says (%s)' % (name, lo, hi, desc))
            if name in mode_defaults:
                want = mode_defaults[name]
            elif name in defaults:
                want = 'default %s' % defaults[name]
            elif name in booleans:
                want = 'default false'
            elif rng:
                raise Fail('%s: no default found in the code' % name)
            else:
                continue
            if want not in desc:
                raise Fail('%s: the code\'s %s is not in psktun.conf(5): (%s)' % (name, want, desc))
    h.log('settings checked: %s' % ' '.join(checked))
    eq(len(checked) >= 25, True, 'at least 25 settings found in agent/config.c (%d)' % len(checked))


def test_every_plugin_option_with_its_range_and_default_is_in_psktun_conf_5(env):
    entries = man_entries(read('etc', 'psktun.conf.5'))
    for plugin in ('coap', 'mqttsn'):
        code = read('plugins', plugin, plugin + '.c')
        macros = dict(re.findall(r'#define (\w+)\s+(\d+)(?:u|UL)?\b', code))
        names = re.findall(r'strcmp\((?:key|o->key), "(\w+)"\)', code)
        eq(len(names) >= 2, True, '%s options found in the source (%r)' % (plugin, names))
        for name in names:
            desc = entries.get(('PLUGIN OPTIONS', plugin, name))
            if desc is None:
                raise Fail('%s option %s is not under PLUGIN OPTIONS/%s in psktun.conf(5)' % (plugin, name, plugin))
            block = code[code.index('"%s")' % name):]
            block = block[:block.find('strcmp(', 10) if 'strcmp(' in block[10:] else len(block)]
            m = re.search(r'parse_uint\((?:value|o->value), (?:(\w+), )?(\w+), ', block)
            if m:
                lo = int(macros.get(m.group(1), m.group(1))) if m.group(1) else 0
                hi = int(macros.get(m.group(2), m.group(2)))
                if '%d to %d' % (lo, hi) not in desc:
                    raise Fail('%s %s: code accepts %d to %d; psktun.conf(5) says (%s)' % (plugin, name, lo, hi, desc))
            base = re.sub(r'_(ms|s)$', '', name).upper()
            dflt = [v for k, v in macros.items() if k.startswith(base + '_DEFAULT')]
            if dflt and 'default %s' % dflt[0] not in desc:
                raise Fail('%s %s: the code\'s default %s is not in psktun.conf(5): (%s)' % (plugin, name, dflt[0], desc))


def test_every_uci_option_the_openwrt_package_reads_is_in_psktun_conf_5(env):
    code = read('packaging', 'openwrt', 'psktun', 'files', 'psktun-uci.sh') + \
        read('packaging', 'openwrt', 'psktun', 'files', 'psktun.init')
    names = set(re.findall(r'config_get(?:_bool)? \w+ (?:main|"\$s") (\w+)', code))
    names |= set(re.search(r'for opt in ([\w \\\n\t]+?); do', code).group(1).replace('\\', ' ').split())
    names.discard('plugin_option_LENGTH')
    names.add('plugin_option')
    src = read('etc', 'psktun.conf.5')
    section = unroff(src[src.index('.SH OPENWRT'):src.index('.SH', src.index('.SH OPENWRT') + 4)])
    missing = sorted(n for n in names if not re.search(r'\b%s\b' % n, section))
    eq(missing, [], 'UCI options missing from psktun.conf(5) OPENWRT')
    eq(len(names) >= 20, True, 'UCI options found in the scripts (%d)' % len(names))


def stats_list_in_psktunctl_8(src):
    """The `.B key` entries of the list under `.B stats` in COMMANDS."""
    i = src.index('.SH COMMANDS')
    i = src.index('.RS', src.index('.B stats', i))
    block = src[i:src.index('.RE', i)]
    return re.findall(r'^\.TP(?: \d+)?\n\.B ([\w.]+)\n', block, re.M)


def test_every_counter_stats_and_metrics_print_is_in_psktunctl_8(env):
    h.psktund()
    term = h.terminator(env, {'meter-0001': os.urandom(16)}, '127.0.0.1:%d' % h.free_udp_port())
    stats = list(term.stats())
    src = read('agent', 'psktunctl.8')
    eq(stats_list_in_psktunctl_8(src), stats, 'psktunctl(8) stats list against `psktunctl stats`')
    r = subprocess.run([h.psktunctl(), '-s', term.control, 'metrics'], capture_output=True, timeout=10)
    eq(r.returncode, 0, 'psktunctl metrics exit code')
    types = dict(re.findall(r'^# TYPE (\w+) (\w+)$', r.stdout.decode(), re.M))
    documented = unroff(src)
    gauges = []
    families = set()
    for key in stats:
        if '.' in key:   # FAMILY.REASON: psktun_FAMILY_total{reason="REASON"}
            families.add(key.split('.')[0])
            eq(types.get('psktun_%s_total' % key.split('.')[0]), 'counter', 'type of %s' % key)
            continue
        if 'psktun_%s_total' % key in types:
            eq(types['psktun_%s_total' % key], 'counter', 'type of psktun_%s_total' % key)
        else:
            eq(types.get('psktun_' + key), 'gauge', 'type of psktun_%s' % key)
            gauges.append('psktun_' + key)
            if not re.search(r'\.BR? psktun_%s\b' % key, documented):
                raise Fail('gauge psktun_%s is not named in psktunctl(8)' % key)
    eq(len(types), len([k for k in stats if '.' not in k]) + len(families),
       'one metric a stats key (one a family)')
    h.log('gauges: %s' % gauges)
    readme = read('README.md')
    missing = [k for k in stats if '`%s`' % k not in readme]
    eq(missing, [], 'stats keys missing from README.md')


if __name__ == '__main__':
    h.main(globals())
