#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that every JSON output type lists its members in the order qemu-img
7.2 prints them.

qemu-img turns its QAPI objects into a QDict before printing, and a QDict
iterates its 512 hash buckets in order (bucket = tdb_hash(key) % 512; a
bucket lists the newest member first).  So the printed order is a function
of the member names, and schema/types.yaml and the plugins' `info` types
must follow it.  Members sharing a bucket may come in either order here
(which one qemu inserts first is QAPI's declaration order).

usage: qdict-order.py [--print NAME...]   (--print: the order of NAMEs)
"""
import glob
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Printed by qemu-img itself, not through a QDict (MapEntry), or outputs
# qemu-img does not have (ImageChecksum: diskimg checksum's own).
NOT_QDICT = {'MapEntry', 'ImageChecksum'}


def tdb_hash(name):
    data = name.encode()
    value = (0x238F13AF * len(data)) & 0xffffffff
    for i, c in enumerate(data):
        value = (value + (c << (i * 5 % 24))) & 0xffffffff
    return (1103515243 * value + 12345) & 0xffffffff


def bucket(name):
    return tdb_hash(name) % 512


def check_members(where, members, problems):
    names = list(members)
    buckets = [bucket(n) for n in names]
    if buckets != sorted(buckets):
        wanted = sorted(names, key=lambda n: (bucket(n), names.index(n)))
        problems.append(f'{where}: members {names}\n    qemu-img prints {wanted}')
    for name, definition in members.items():
        if isinstance(definition, dict) and isinstance(definition.get('members'), dict):
            check_members(f'{where}.{name}', definition['members'], problems)


def main():
    if sys.argv[1:2] == ['--print']:
        print(' '.join(sorted(sys.argv[2:], key=bucket)))
        return 0
    problems = []
    files = [os.path.join(ROOT, 'schema', 'types.yaml')] + sorted(
        glob.glob(os.path.join(ROOT, 'plugins', '*', '*', '*.yaml')))
    checked = 0
    for path in files:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        rel = os.path.relpath(path, ROOT)
        sets = dict(doc.get('types') or {})
        if isinstance(doc.get('info'), dict):
            sets['info'] = doc['info']
        for name, members in sets.items():
            if name in NOT_QDICT or not isinstance(members, dict):
                continue
            check_members(f'{rel}: {name}', members, problems)
            checked += 1
    for p in problems:
        print(p)
    print(f'{checked} output types checked, {len(problems)} out of qemu-img order')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
