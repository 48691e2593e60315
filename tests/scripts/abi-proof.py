#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""abi-proof.py ABI_CHECK LIBDISKIMG SOURCE_ROOT

Shows that the ABI check (tests/scripts/abi-check.sh) fails when it must.
It cannot rebuild an old library, so it edits a copy of the committed
baseline instead, which is the same comparison seen from the other side:

- a baseline whose diskimg_create_params lacks a member in the middle (the
  later members moved up) makes the current library look like one with a
  member inserted mid-struct: an incompatible layout change;
- a baseline that exports a function the current library lacks makes the
  library look like one that removed an export.

The unedited baseline must pass, so a failure is the edit's doing.  Prints
TAP."""
import os
import re
import subprocess
import sys
import tempfile

abi_check, lib, src = sys.argv[1:4]
baseline = os.path.join(src, 'core', 'abi', 'libdiskimg.abi')
n = 0
failed = 0


def ok(cond, desc, detail=''):
    global n, failed
    n += 1
    print(('ok %d - %s' if cond else 'not ok %d - %s') % (n, desc))
    if not cond:
        failed += 1
        for line in detail.splitlines()[-30:]:
            print('# ' + line)


def run_check(base):
    p = subprocess.run(['sh', abi_check, lib, src, base], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def drop_mid_member(xml, struct):
    """Removes the third member of `struct` and moves the later ones up."""
    start = xml.index("<class-decl name='%s'" % struct)
    end = xml.index('</class-decl>', start)
    body = xml[start:end]
    members = list(re.finditer(r"<data-member access='public' layout-offset-in-bits='(\d+)'>"
                               r".*?</data-member>\s*", body, re.S))
    assert len(members) >= 4, struct
    gone = members[2]
    width = int(members[3].group(1)) - int(gone.group(1))
    # Everything before the dropped member stays; each later member moves
    # up by the dropped member's width, and so does the struct's size.
    out = body[:gone.start()]
    tail = body[gone.end():]
    tail = re.sub(r"(<data-member access='public' layout-offset-in-bits=')(\d+)'",
                  lambda m: "%s%d'" % (m.group(1), int(m.group(2)) - width), tail)
    size = int(re.search(r"size-in-bits='(\d+)'", body).group(1))
    head = re.sub(r"size-in-bits='\d+'", "size-in-bits='%d'" % (size - width), out, count=1)
    return xml[:start] + head + tail + xml[end:]


def add_export(xml, name):
    """Renames diskimg_version, symbol and declaration, to `name`: the
    library then lacks an export the baseline has."""
    count = xml.count("'diskimg_version'")
    assert count >= 2, 'diskimg_version is not in the baseline'
    return xml.replace("'diskimg_version'", "'%s'" % name)


with open(baseline) as f:
    base_xml = f.read()

rc, out = run_check(baseline)
ok(rc == 0, 'the committed baseline passes (control)', out)
if rc == 77:
    print('1..0 # SKIP abidiff (abigail-tools) is not installed')
    sys.exit(0)

with tempfile.TemporaryDirectory() as tmp:
    inserted = os.path.join(tmp, 'inserted.abi')
    with open(inserted, 'w') as f:
        f.write(drop_mid_member(base_xml, 'diskimg_create_params'))
    rc, out = run_check(inserted)
    ok(rc != 0, 'a member inserted mid-struct fails the check', out)
    ok("'struct diskimg_create_params'" in out and 'options' in out,
       'abidiff names the struct and the inserted member', out)

    removed = os.path.join(tmp, 'removed.abi')
    with open(removed, 'w') as f:
        f.write(add_export(base_xml, 'diskimg_removed_export'))
    rc, out = run_check(removed)
    ok(rc != 0, 'a removed export fails the check', out)
    ok('diskimg_removed_export' in out and 'Removed' in out,
       'abidiff names the removed function', out)

print('1..%d' % n)
sys.exit(1 if failed else 0)
