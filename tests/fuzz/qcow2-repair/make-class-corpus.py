#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-made part of the regression corpus: one recipe per
corruption class of issue 8 (refcount table entries naming other
structures, reserved bits, COPIED misuse, header classes...), computed from
the layout of fuzz.py's deterministic base images.  The recipes are plain
offset/bytes edits, like the ones the campaign saves; re-run this only when
a generator changes.  Usage: make-class-corpus.py CORPUS_DIR"""
import json
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz  # noqa: E402

OFF = fuzz.OFF
u64 = lambda b, o: struct.unpack_from('>Q', b, o)[0]
u32 = lambda b, o: struct.unpack_from('>I', b, o)[0]
p64 = lambda v: struct.pack('>Q', v).hex()
p32 = lambda v: struct.pack('>I', v).hex()


def main():
    out = sys.argv[1]
    root = tempfile.mkdtemp(prefix='qcow2-class-corpus.')
    images, recs = {}, {}

    def base(g):
        if g not in images:
            d = os.path.join(root, g)
            os.makedirs(d)
            fuzz.GENERATORS[g](d)
            images[g] = os.path.join(d, 'base.qcow2')
        return open(images[g], 'rb').read()

    def add(name, g, muts, what, trunc=None, same=True):
        recs[name] = dict(generator=g, mutations=muts, truncate=trunc, found=what,
                          kind='class', expect_same_check=same)

    b = base('plain')
    cs, l1, rt = 1 << u32(b, 20), u64(b, 40), u64(b, 48)
    l2, rb0 = u64(b, l1) & OFF, u64(b, rt)
    add('reftable-entry-on-data', 'plain', [[rt, p64(u64(b, l2) & OFF)]],
        'refcount table entry naming a live data cluster (shared refcount block)')
    add('reftable-entry-2gib', 'plain', [[rt + 8, p64(1 << 31)]],
        'refcount table entry 2 GiB beyond the file (outside image)')
    add('reftable-entry-reserved', 'plain', [[rt, p64(rb0 | 0x100)]],
        'reserved bits in a refcount table entry')
    add('reftable-entry-misaligned', 'plain', [[rt, p64(rb0 + 512)]],
        'misaligned refcount block')
    add('l1-entry-reserved', 'plain', [[l1, p64(u64(b, l1) | (1 << 56))]],
        'reserved bits in an L1 entry')
    add('l2-entry-reserved', 'plain', [[l2, p64(u64(b, l2) | (1 << 4))]],
        'reserved bits in an L2 entry')
    add('l1-entry-on-reftable', 'plain', [[l1 + 8, p64(rt)]],
        'L1 entry naming the refcount table (the COPIED fix must not write there)',
        same=False)
    add('truncated-not-512', 'plain', [], 'file truncated to a length that is not a '
        'multiple of 512', trunc=len(b) - cs + 100)
    o = u32(b, 100)
    while u32(b, o) != 0:
        o += 8 + ((u32(b, o + 4) + 7) & ~7)
    add('end-extension-bad-length', 'plain', [[o + 4, p32(0x10000)]],
        'end-of-extensions marker with a length past the cluster')
    add('snapshot-offset-2^63-empty', 'plain', [[64, p64(1 << 63)]],
        'snapshot table offset 2^63 with zero snapshots')

    b = base('snapshots')
    rt, sn = u64(b, 48), u64(b, 64)
    add('reftable-entry-on-snapshot-table', 'snapshots', [[rt, p64(sn)]],
        'refcount table entry naming the snapshot table')
    add('reftable-entry-on-snapshot-l1', 'snapshots', [[rt, p64(u64(b, sn))]],
        "refcount table entry naming a snapshot's L1 table")

    b = base('bitmaps')
    regs, _, _ = fuzz.layout(images['bitmaps'])
    bdir = [r for r in regs if r[0] == 'bitmap-dir'][0][1]
    btab = [r for r in regs if r[0] == 'bitmap-table'][0][1]
    add('reftable-entry-on-bitmap-dir', 'bitmaps', [[u64(b, 48), p64(bdir)]],
        'refcount table entry naming the bitmap directory')
    e = u64(b, btab)
    add('bitmap-table-entry-flags', 'bitmaps', [[btab, p64((e & OFF) | 1 if e & OFF else 2)]],
        'bitmap table entry with reserved flag bits')

    b = base('compressed')
    l2 = u64(b, u64(b, 40)) & OFF
    i = next(i for i in range(cs // 8) if u64(b, l2 + 8 * i) & (1 << 62))
    add('copied-on-compressed', 'compressed',
        [[l2 + 8 * i, p64(u64(b, l2 + 8 * i) | (1 << 63))]], 'COPIED flag on a compressed cluster')

    b = base('extl2-compressed')
    l2 = u64(b, u64(b, 40)) & OFF
    add('extl2-compressed-bitmap', 'extl2-compressed', [[l2 + 8, p64(1)]],
        'subcluster bitmap bits on an extended-L2 compressed cluster')

    b = base('datafile')
    l2 = u64(b, u64(b, 40)) & OFF
    add('datafile-copied-cleared', 'datafile', [[l2, p64(u64(b, l2) & ~(1 << 63))]],
        'COPIED cleared on a data-file cluster')

    os.makedirs(out, exist_ok=True)
    for name, rec in recs.items():
        with open(os.path.join(out, 'class-%s.json' % name), 'w') as f:
            json.dump(rec, f, indent=1)
    print('%d recipes' % len(recs))


if __name__ == '__main__':
    main()
