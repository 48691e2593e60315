#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""introspection.py DISKIMG SOURCE_ROOT

Validates the introspection documents the built diskimg prints against the
committed JSON Schemas (docs/introspection/*.schema.json): the plugin
listing of every kind, the schema listing, and the schema document of every
built plugin and core schema.  Then checks that the schemas are not
vacuous: documents broken in ways a consumer would trip over must fail.
Prints TAP."""
import copy
import json
import os
import subprocess
import sys

try:
    import jsonschema
except ImportError:
    print('1..0 # SKIP python3-jsonschema is not installed')
    sys.exit(0)

diskimg, src = sys.argv[1], sys.argv[2]
n = 0
failed = 0


def ok(cond, desc, detail=''):
    global n, failed
    n += 1
    print(('ok %d - %s' if cond else 'not ok %d - %s') % (n, desc))
    if not cond:
        failed += 1
        for line in str(detail).splitlines():
            print('# ' + line)


def load_schema(name):
    with open(os.path.join(src, 'docs', 'introspection', name)) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def diskimg_json(*args):
    out = subprocess.run([diskimg, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def errors(validator, doc):
    return [e.message for e in validator.iter_errors(doc)]


plugins_v = load_schema('plugins.schema.json')
schema_v = load_schema('schema.schema.json')

listing = diskimg_json('schema', '--output=json')
ok(listing.get('introspection-version') == 1, 'schema listing carries introspection-version 1',
   listing)

formats = diskimg_json('--list-formats', '--output=json')
e = errors(plugins_v, formats)
ok(not e, '--list-formats --output=json validates against plugins.schema.json', '\n'.join(e))
ok(sorted(p['name'] for p in formats['plugins']) == sorted(listing['format']),
   '--list-formats names the same formats as the schema listing')
for p in formats['plugins']:
    ok(os.path.isfile(p['path']), 'format %s: path names its plugin file' % p['name'], p['path'])
    ok(p['package'] == 'diskimg-format-' + p['name'],
       'format %s: package is diskimg-format-%s' % (p['name'], p['name']), p['package'])

# The command prints what the library returns for formats; the other kinds
# are reached through the library (the example program shows how) and through
# `schema`.  Each plugin's schema document must validate.
names = [(k, name) for k in ('format', 'io', 'crypto') for name in listing[k]]
names += [(None, name) for name in listing['core']]
for kind, name in names:
    args = ['schema', name, '--output=json'] + (['--kind', kind] if kind else [])
    doc = diskimg_json(*args)
    e = errors(schema_v, doc)
    ok(not e, 'schema %s%s validates against schema.schema.json'
       % (name, ' (%s)' % kind if kind else ''), '\n'.join(e))
    if kind:
        ok(doc.get('name') == name and doc.get('kind') == kind,
           'schema %s names itself and its kind' % name, doc.get('name'))

# Not vacuous: each breakage must be caught.
qcow2 = diskimg_json('schema', 'qcow2', '--output=json') if 'qcow2' in listing['format'] else None
broken = []
d = copy.deepcopy(formats); del d['introspection-version']
broken.append(('listing without introspection-version', plugins_v, d))
d = copy.deepcopy(formats); d['introspection-version'] = 2
broken.append(('listing of a version this schema does not describe', plugins_v, d))
d = copy.deepcopy(formats); d['plugins'][0]['writable'] = 'yes'
broken.append(('writable as a string', plugins_v, d))
d = copy.deepcopy(formats)
next(p for p in d['plugins'] if p['writable'])['writable'] = False
broken.append(('read-only format without the read-only capability', plugins_v, d))
d = copy.deepcopy(formats)
for p in d['plugins']:
    if not p['writable']:
        p['writable'] = True
        break
else:
    d = None
if d:
    broken.append(('writable format with the read-only capability', plugins_v, d))
d = copy.deepcopy(formats); del d['plugins'][0]['operations']
broken.append(('format entry without operations', plugins_v, d))
if qcow2:
    d = copy.deepcopy(qcow2)
    enum = next(m for m in d['options']['create-options'] if m['type'] == 'enum')
    del enum['values']
    broken.append(('enum option without values', schema_v, d))
    d = copy.deepcopy(qcow2)
    struct = next(m for m in d['options']['create-options'] if m['type'] == 'struct')
    del struct['members'][0]['name']
    broken.append(('struct member without a name', schema_v, d))
    d = copy.deepcopy(qcow2); d['options']['create-options'][0]['default'] = [1]
    broken.append(('default that is not a scalar', schema_v, d))
for desc, validator, doc in broken:
    ok(bool(errors(validator, doc)), 'rejected: ' + desc)

print('1..%d' % n)
sys.exit(1 if failed else 0)
