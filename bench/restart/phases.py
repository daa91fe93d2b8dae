#!/usr/bin/env python3
# usage: phases.py LOG T0_NS [all] -- phase lines after the last START marker, in s since T0
import sys, re, datetime
path, t0 = sys.argv[1], int(sys.argv[2]) / 1e9
show_all = len(sys.argv) > 3
lines = open(path, errors='replace').read().splitlines()
last = max((i for i, l in enumerate(lines) if l.startswith('=== START')), default=-1)
KEYS = ['serving', 'starting restore', 'restored from snapshot', 'initial configuration', 'entering follower',
        'entering candidate', 'election won', 'entering leader', 'gained leadership', 'pre-vote',
        'snapshot', 'compacting', 'failed', 'error', 'ERROR', 'WARN', 'added peer', 'pipelining']
seen = {}
for l in lines[last + 1:]:
    m = re.match(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)([+-]\d{4}|Z)?\s+(.*)', l)
    if not m:
        continue
    ts = m.group(1) + (m.group(2) or '+0000').replace('Z', '+0000')
    t = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%S.%f%z').timestamp()
    msg = m.group(3)
    if not show_all:
        k = next((k for k in KEYS if k in msg), None)
        if k is None:
            continue
        n = seen.get(k, 0); seen[k] = n + 1
        if n >= 3:
            continue
    print('  %7.3f %s' % (t - t0, msg[:220]))
