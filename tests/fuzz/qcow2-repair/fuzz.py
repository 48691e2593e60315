#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Mutation fuzzer for `diskimg check` and `diskimg check -r all` on qcow2,
judged by the real qemu-img.

A case is a base image (made by qemu-img/qemu-io from one of GENERATORS)
and a recipe of mutations (byte writes at file offsets, an optional
truncation).  Mutations are drawn over every metadata structure of the
base (header and its extensions, L1 and L2 tables, refcount table and
blocks, snapshot table and snapshot L1 tables, bitmap directory and
tables, the LUKS header), not tuned to known bugs: random bytes, bit flips,
and table entries set to the offsets of other structures, just off them,
far beyond the file, or with reserved/flag bits.

Judging one case (judge()):
  1. `diskimg check` must not crash or hang; its exit code and JSON counts
     are compared with `qemu-img check` (a difference is a "mismatch").
  2. One copy is repaired by `diskimg check -r all`, another by
     `qemu-img check -r all`.  Ours must then pass `qemu-img check` whenever
     qemu's repair does (never rated worse), and keep every guest byte, of
     the active layer and of each snapshot, that qemu's repair keeps
     (bytes equal to the undamaged base there).
A violation of 2 (or a crash/hang) is a "failure".

Usage:
  fuzz.py campaign --diskimg D --seconds N [--seed S] [--save DIR]
  fuzz.py replay   --diskimg D CORPUS_DIR      (TAP; what meson test runs)
Recipes (JSON) name the generator, the mutations and what was found.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

TIMEOUT = 60
SECRET = ['--object', 'secret,id=sec0,data=fuzz']

# ----------------------------------------------------------- generators

def sh(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT, **kw)

def qio(img, cmds, extra=()):
    args = ['qemu-io', *extra]
    for c in cmds:
        args += ['-c', c]
    # relative names in the image (a data file) resolve from its directory
    r = sh(args + [img], cwd=os.path.dirname(os.path.abspath(img)))
    if r.returncode:
        raise RuntimeError('qemu-io failed: ' + r.stderr.decode())

def make_image(d, opts, size, writes):
    """base.qcow2 in d: qemu-img create with -o opts (if any), then the
    qemu-io writes."""
    img = os.path.join(d, 'base.qcow2')
    sh(['qemu-img', 'create', '-q', '-f', 'qcow2'] + (['-o', opts] if opts else []) +
       [img, size])
    qio(img, writes)
    return img

def gen_plain(d, opts=''):
    return make_image(d, opts, '8M', ['write -P 0x11 0 192k', 'write -P 0x22 1M 64k',
                                      'write -P 0x33 3M 8k', 'write -z 5M 64k'])

def gen_small_clusters(d):
    return gen_plain(d, 'cluster_size=4096,refcount_bits=16')

def gen_refcount8(d):
    return gen_plain(d, 'cluster_size=16384,refcount_bits=8')

def gen_snapshots(d):
    img = gen_plain(d, 'cluster_size=16384')
    sh(['qemu-img', 'snapshot', '-c', 'sn1', img])
    qio(img, ['write -P 0x44 0 32k', 'write -P 0x55 2M 64k'])
    sh(['qemu-img', 'snapshot', '-c', 'sn2', img])
    qio(img, ['write -P 0x66 16k 16k'])
    return img

def gen_bitmaps(d):
    img = gen_plain(d, 'cluster_size=16384')
    sh(['qemu-img', 'bitmap', '--add', img, 'b0'])
    sh(['qemu-img', 'bitmap', '--add', '-g', '131072', img, 'b1'])
    qio(img, ['write -P 0x77 0 64k', 'write -P 0x78 4M 256k'])
    return img

def gen_compressed(d):
    raw = os.path.join(d, 'src.raw')
    with open(raw, 'wb') as f:
        for i in range(64):
            f.write(bytes([i]) * 4096 + (b'pattern%03d' % i) * 372 + b'x' * 4)
    img = os.path.join(d, 'base.qcow2')
    sh(['qemu-img', 'convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=8192', raw, img])
    qio(img, ['write -P 0x99 100k 8k'])
    os.unlink(raw)
    return img

def gen_extl2(d):
    img = gen_plain(d, 'extended_l2=on,cluster_size=65536')
    qio(img, ['write -P 0x12 2052k 4k', 'write -c -P 0x13 6M 64k'])
    return img

def gen_extl2_compressed(d):
    return make_image(d, 'extended_l2=on', '4M', ['write -c -P 0x21 0 64k',
                                                  'write -c -P 0x22 64k 64k',
                                                  'write -P 0x23 1M 4k'])

def gen_luks(d):
    img = os.path.join(d, 'base.qcow2')
    # qemu-img's key setup fails now and then under load ("Unable to get
    # accurate CPU usage"): retry
    for _ in range(10):
        r = sh(['qemu-img', 'create', '-q', '-f', 'qcow2', *SECRET, '-o',
                'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,'
                'cluster_size=16384', img, '4M'])
        if r.returncode == 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError('luks create: ' + r.stderr.decode())
    args = ['qemu-io', *SECRET, '--image-opts', '-c', 'write -P 0x31 0 32k',
            '-c', 'write -P 0x32 1M 16k',
            'driver=qcow2,file.filename=%s,encrypt.key-secret=sec0' % img]
    sh(args)
    return img

def gen_datafile(d):
    img = os.path.join(os.path.abspath(d), 'base.qcow2')
    sh(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
        'data_file=base.data,cluster_size=16384', img, '4M'], cwd=d)
    qio(img, ['write -P 0x41 0 48k', 'write -P 0x42 2M 16k'])
    return img

def gen_v2(d):
    # compat 0.10: no zero flag, no header extensions area of v3, a
    # snapshot table of v2 entries
    img = gen_plain(d, 'compat=0.10,cluster_size=16384')
    sh(['qemu-img', 'snapshot', '-c', 'old', img])
    qio(img, ['write -P 0x5a 32k 16k'])
    return img

def gen_tiny_clusters(d):
    # 512-byte clusters: an L1 table of many entries, many refcount blocks,
    # tables that span several clusters
    return gen_plain(d, 'cluster_size=512')

def gen_refcount1(d):
    return gen_plain(d, 'cluster_size=8192,refcount_bits=1')

def gen_refcount64(d):
    return gen_plain(d, 'cluster_size=8192,refcount_bits=64')

def gen_zstd(d):
    return make_image(d, 'compression_type=zstd,cluster_size=8192', '2M',
                      ['write -c -P 0x61 0 64k', 'write -P 0x62 512k 16k'])

def gen_wide_l1(d):
    # guest data under three L1 entries, far apart
    return make_image(d, 'cluster_size=4096', '64M', ['write -P 0x71 0 8k',
                                                      'write -P 0x72 20M 12k',
                                                      'write -P 0x73 60M 4k'])

def gen_backing(d):
    # an overlay: what it leaves unallocated reads from its backing file
    # (judge() copies the backing file beside the work images)
    back = os.path.join(d, 'back.qcow2')
    sh(['qemu-img', 'create', '-q', '-f', 'qcow2', back, '4M'])
    qio(back, ['write -P 0x81 0 1M'])
    img = os.path.join(d, 'base.qcow2')
    sh(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'back.qcow2', '-F', 'qcow2', '-o',
        'cluster_size=16384', img, '4M'], cwd=d)
    qio(img, ['write -P 0x82 16k 32k', 'write -z 256k 16k', 'write -P 0x83 2M 16k'])
    return img

GENERATORS = {
    'plain': gen_plain, 'small-clusters': gen_small_clusters, 'refcount8': gen_refcount8,
    'snapshots': gen_snapshots, 'bitmaps': gen_bitmaps, 'compressed': gen_compressed,
    'extl2': gen_extl2, 'extl2-compressed': gen_extl2_compressed, 'luks': gen_luks,
    'datafile': gen_datafile, 'v2': gen_v2, 'tiny-clusters': gen_tiny_clusters,
    'refcount1': gen_refcount1, 'refcount64': gen_refcount64, 'zstd': gen_zstd,
    'wide-l1': gen_wide_l1, 'backing': gen_backing,
}

# ----------------------------------------------------------- qcow2 layout

OFF = 0x00fffffffffffe00

def layout(path):
    """Regions of metadata: list of (name, offset, length, entry_size)."""
    b = open(path, 'rb').read()
    u32 = lambda o: struct.unpack_from('>I', b, o)[0]
    u64 = lambda o: struct.unpack_from('>Q', b, o)[0]
    cb = u32(20)
    cs = 1 << cb
    version = u32(4)
    hlen = u32(100) if version >= 3 else 72
    regs = [('header', 0, hlen, 1)]
    incompat = u64(72) if version >= 3 else 0
    ext_l2 = bool(incompat & 16)
    l2e = 16 if ext_l2 else 8
    l1_size, l1_off = u32(36), u64(40)
    regs.append(('l1', l1_off, l1_size * 8, 8))
    for i in range(l1_size):
        l2 = u64(l1_off + 8 * i) & OFF
        if l2:
            regs.append(('l2', l2, cs, l2e))
    rt_off, rt_cl = u64(48), u32(56)
    regs.append(('reftable', rt_off, rt_cl * cs, 8))
    for i in range(rt_cl * cs // 8):
        rb = u64(rt_off + 8 * i) & OFF
        if rb:
            regs.append(('refblock', rb, min(cs, 512), 1))
    nsn, sn_off = u32(60), u64(64)
    o = sn_off
    for _ in range(nsn):
        sl1, sl1n = u64(o), u32(o + 8)
        idl, nml, extra = struct.unpack_from('>HH', b, o + 12) + (u32(o + 36),)
        ln = 40 + extra + idl + nml
        regs.append(('snapshot-entry', o, ln, 1))
        regs.append(('snapshot-l1', sl1, sl1n * 8, 8))
        for i in range(sl1n):
            l2 = u64(sl1 + 8 * i) & OFF
            if l2:
                regs.append(('snapshot-l2', l2, cs, l2e))
        o += (ln + 7) & ~7
    # header extensions
    o = hlen
    while version >= 3 and o + 8 <= cs:
        t, ln = u32(o), u32(o + 4)
        regs.append(('extension', o, 8 + min(ln, 64), 1))
        if t == 0:
            break
        if t == 0x23852875:       # bitmaps
            nbm, dsz, doff = u32(o + 8), u64(o + 16), u64(o + 24)
            regs.append(('bitmap-dir', doff, dsz, 1))
            p = doff
            for _ in range(nbm):
                toff, tsz = u64(p), u32(p + 8)
                regs.append(('bitmap-table', toff, tsz * 8, 8))
                nl, el = struct.unpack_from('>H', b, p + 18)[0], u32(p + 20)
                p += (24 + el + nl + 7) & ~7
        if t == 0x0537be77:       # crypto header
            coff, clen = u64(o + 8), u64(o + 16)
            regs.append(('luks', coff, min(clen, 4096), 1))
            regs.append(('luks-keyslots', coff + 208, 48 * 8, 1))
        o += 8 + ((ln + 7) & ~7)
    return regs, cs, len(b)

def valid_regions(regs, size):
    return [r for r in regs if r[2] > 0 and 0 <= r[1] < size]

def mutate(rng, path):
    """A random recipe for the image at path: list of [offset, hex] and
    an optional truncation length."""
    regs, cs, size = layout(path)
    regs = valid_regions(regs, size)
    offsets = sorted({r[1] for r in regs} | {0, cs, size, size - cs})
    muts, trunc = [], None
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        name, off, ln, es = rng.choice(regs)
        kind = rng.random()
        if es == 8 and kind < 0.6:
            pos = off + rng.randrange(max(ln // 8, 1)) * 8
            pos = min(pos, size - 8)
            old = struct.unpack('>Q', open(path, 'rb').read()[pos:pos + 8])[0]
            choice = rng.randrange(10)
            if choice == 0:
                new = rng.choice(offsets) | (old & ~OFF)
            elif choice == 1:
                new = old + rng.choice([512, -512, cs, -cs, 8])
            elif choice == 2:
                new = (old & ~OFF) | rng.choice([1 << 31, 1 << 40, (1 << 56) - cs, size + cs])
            elif choice == 3:
                new = old | (1 << rng.choice([1, 2, 5, 8, 56, 57, 60, 61]))
            elif choice == 4:
                new = old ^ (1 << rng.choice([0, 62, 63]))
            elif choice == 5:
                new = 0
            elif choice == 6:
                new = rng.getrandbits(64)
            else:
                new = old ^ (1 << rng.randrange(64))
            new &= (1 << 64) - 1
            muts.append([pos, struct.pack('>Q', new).hex()])
        elif kind < 0.8:
            pos = off + rng.randrange(max(ln, 1))
            pos = min(pos, size - 1)
            muts.append([pos, bytes([rng.randrange(256)]).hex()])
        else:
            pos = off + rng.randrange(max(ln - 3, 1))
            pos = min(pos, size - 4)
            v = rng.choice([0, 1, 0xffffffff, 0x7fffffff, 1 << 24, rng.getrandbits(32),
                            rng.randrange(4096)])
            muts.append([pos, struct.pack('>I', v).hex()])
    if rng.random() < 0.06:
        trunc = size - rng.randrange(1, 2 * cs)
    return muts, trunc

def apply(path, muts, trunc):
    with open(path, 'r+b') as f:
        for pos, hexb in muts:
            f.seek(pos)
            f.write(bytes.fromhex(hexb))
        if trunc is not None:
            f.truncate(max(trunc, 0))

# ----------------------------------------------------------- judging

def image_args(gen, img):
    if gen == 'luks':
        return SECRET + ['--image-opts',
                         'driver=qcow2,file.filename=%s,encrypt.key-secret=sec0' % img]
    return [img]

def run_check(tool, gen, img, repair=False):
    args = [tool, 'check', '--output=json'] + (['-r', 'all'] if repair else [])
    try:
        r = sh(args + image_args(gen, img), cwd=os.path.dirname(img))
    except subprocess.TimeoutExpired:
        return 'hang', None, ''
    out = r.stdout.decode(errors='replace')
    try:
        j = json.loads(out) if out.strip().startswith('{') else None
    except ValueError:
        j = None
    return r.returncode, j, r.stderr.decode(errors='replace')

def counts(j):
    if not j:
        return None
    return {k: j.get(k, 0) for k in ('corruptions', 'leaks', 'check-errors')}

def contents(gen, img, snapshot=None):
    """Guest bytes of the active layer or a snapshot, None if unreadable."""
    out = img + '.raw'
    args = ['qemu-img', 'convert', '-O', 'raw']
    if snapshot:
        args += ['-l', 'snapshot.name=' + snapshot]
    try:
        r = sh(args + image_args(gen, img) + [out], cwd=os.path.dirname(img))
    except subprocess.TimeoutExpired:
        return None
    if r.returncode:
        return None
    data = open(out, 'rb').read()
    os.unlink(out)
    return data

def snapshots(img):
    r = sh(['qemu-img', 'snapshot', '-l', img])
    names = []
    for line in r.stdout.decode(errors='replace').splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 2:
            names.append(parts[1])
    return names

def kept_bytes_lost(orig, theirs, ours):
    """Bytes where qemu's repair kept the original and ours did not."""
    if orig is None or theirs is None:
        return 0
    if ours is None:
        return max(1, sum(1 for x, y in zip(orig, theirs) if x == y))
    if ours == orig:
        return 0
    lost, step = 0, 4096
    for o in range(0, max(len(orig), len(ours)), step):
        a, b, c = orig[o:o + step], theirs[o:o + step], ours[o:o + step]
        if a == c:
            continue
        if a == b:
            lost += sum(1 for x, z in zip(a, c) if x != z) + abs(len(a) - len(c))
        else:
            lost += sum(1 for x, y, z in zip(a, b, c) if x == y and x != z)
    return lost

def message_classes(stderr):
    out = set()
    for line in stderr.splitlines():
        line = re.sub(r'0x[0-9a-fA-F]+|[0-9a-fA-F]{6,}|\d+', 'N', line.strip())
        if line and not line.startswith('{'):
            out.add(line[:100])
    return out

def rank(rc):
    """How healthy `qemu-img check` rates an image: 0 clean, 3 leaks only,
    2 corruptions, 1 (or anything else) not even checkable."""
    return {0: 0, 3: 1, 2: 2}.get(rc, 3)

def judge(diskimg, gen, base_dir, muts, trunc, work):
    """Returns (failures, mismatches, classes) for one case."""
    base = os.path.join(base_dir, 'base.qcow2')
    fails, mism = [], []
    for f in os.listdir(work):
        os.unlink(os.path.join(work, f))
    for f in os.listdir(base_dir):
        if f != 'base.qcow2' and not f.endswith('.raw.ref'):
            shutil.copy(os.path.join(base_dir, f), work)
    m = os.path.join(work, 'm.qcow2')
    shutil.copy(base, m)
    apply(m, muts, trunc)
    qrc, qj, qerr = run_check('qemu-img', gen, m)
    trc, tj, terr = run_check(diskimg, gen, m)
    classes = message_classes(qerr)
    if trc == 'hang' or (isinstance(trc, int) and trc >= 128 or trc < 0):
        fails.append('diskimg check crashed or hung (%s)' % trc)
    if 'AddressSanitizer' in terr or 'runtime error' in terr:
        fails.append('sanitizer: ' + terr[:200])
    # qemu-img's check opens the backing chain first, ours checks the image
    # alone (tests/compat/known-differences.txt): no mismatch
    chain_only = qrc == 1 and qj is None and 'Could not open backing file' in qerr
    if chain_only:
        pass
    elif qrc != trc:
        mism.append('check exit %s, qemu-img %s' % (trc, qrc))
    elif counts(qj) != counts(tj):
        mism.append('check counts %s, qemu-img %s' % (counts(tj), counts(qj)))
    a, b = os.path.join(work, 'a.qcow2'), os.path.join(work, 'b.qcow2')
    shutil.copy(m, a)
    shutil.copy(m, b)
    arc, _, aerr = run_check(diskimg, gen, a, repair=True)
    brc, _, _ = run_check('qemu-img', gen, b, repair=True)
    if arc == 'hang' or (isinstance(arc, int) and (arc >= 128 or arc < 0)):
        fails.append('diskimg check -r all crashed or hung (%s)' % arc)
    if 'AddressSanitizer' in aerr or 'runtime error' in aerr:
        fails.append('sanitizer (repair): ' + aerr[:200])
    qa, _, qaerr = run_check('qemu-img', gen, a)
    qb, _, _ = run_check('qemu-img', gen, b)
    # An image we refuse to open (stricter than qemu, e.g. LUKS key material
    # beyond the encryption header, which qemu's repair then frees) and
    # leave byte for byte unchanged is a refusal, not a failed repair.
    refused = (trc == 1 and tj is None and arc == 1 and
               open(a, 'rb').read() == open(m, 'rb').read())
    if refused:
        if qa != 0 and qj is not None:
            mism.append('refused (image unchanged): ' + terr.strip().splitlines()[-1][:120]
                        if terr.strip() else 'refused (image unchanged)')
    elif rank(qa) > rank(qb):
        first = next((l for l in qaerr.splitlines() if 'ERROR' in l or 'Leak' in l or
                      'rror' in l), '')
        fails.append('after our repair qemu-img check exits %s (after its own: %s): %s' %
                     (qa, qb, first[:160]))
    if qb == 0 and not refused:
        ref = os.path.join(base_dir, 'active.raw.ref')
        orig = open(ref, 'rb').read() if os.path.exists(ref) else contents(gen, base)
        lost = kept_bytes_lost(orig, contents(gen, b), contents(gen, a))
        if lost:
            fails.append('active layer: %d guest bytes lost that qemu-img repair keeps' % lost)
        if gen != 'luks':
            for sn in snapshots(base):
                o = contents(gen, base, sn)
                if sn not in snapshots(b):
                    continue
                lost = kept_bytes_lost(o, contents(gen, b, sn), contents(gen, a, sn))
                if lost:
                    fails.append('snapshot %s: %d guest bytes lost that qemu-img keeps' %
                                 (sn, lost))
    return fails, mism, classes

# ----------------------------------------------------------- modes

def make_base(gen, root):
    d = os.path.join(root, 'base-' + gen)
    if os.path.exists(os.path.join(d, 'base.qcow2')):
        return d
    os.makedirs(d, exist_ok=True)
    GENERATORS[gen](d)
    data = contents(gen, os.path.join(d, 'base.qcow2'))
    if data is not None:
        open(os.path.join(d, 'active.raw.ref'), 'wb').write(data)
    return d

def campaign(a):
    rng = random.Random(a.seed)
    root = tempfile.mkdtemp(prefix='qcow2-repair-fuzz.')
    work = os.path.join(root, 'work')
    os.makedirs(work)
    deadline = time.time() + a.seconds
    runs, nfail, nmism = 0, 0, 0
    classes, fail_kinds, mism_kinds = {}, {}, {}
    saved = set()
    if a.save:
        os.makedirs(a.save, exist_ok=True)
    gens = sorted(GENERATORS)
    bases = {}
    while time.time() < deadline:
        gen = rng.choice(gens)
        try:
            if gen not in bases:
                bases[gen] = make_base(gen, root)
        except Exception as e:
            print('generator %s failed: %s' % (gen, e), flush=True)
            gens.remove(gen)
            continue
        base_dir = bases[gen]
        muts, trunc = mutate(rng, os.path.join(base_dir, 'base.qcow2'))
        try:
            fails, mism, cls = judge(a.diskimg, gen, base_dir, muts, trunc, work)
        except subprocess.TimeoutExpired:
            fails, mism, cls = ['timeout'], [], set()
        runs += 1
        for c in cls:
            classes[c] = classes.get(c, 0) + 1
        for what, store, kinds in ((fails, 'fail', fail_kinds), (mism, 'mismatch', mism_kinds)):
            for w in what:
                k = re.sub(r'\d+|0x[0-9a-f]+', 'N', w)[:90]
                kinds[k] = kinds.get(k, 0) + 1
                key = (store, k, gen)
                if a.save and key not in saved:
                    saved.add(key)
                    name = '%s-%s-%s.json' % (store, gen,
                                              hashlib.sha1(repr((muts, trunc)).encode())
                                              .hexdigest()[:10])
                    rec = {'generator': gen, 'mutations': muts, 'truncate': trunc,
                           'found': w, 'kind': store}
                    with open(os.path.join(a.save, name), 'w') as f:
                        json.dump(rec, f, indent=1)
        nfail += bool(fails)
        nmism += bool(mism)
        if runs % 50 == 0:
            print('runs %d failures %d mismatches %d classes %d' %
                  (runs, nfail, nmism, len(classes)), flush=True)
    print('FINAL runs %d, cases with failures %d, with check mismatches %d' %
          (runs, nfail, nmism))
    print('failure kinds:', json.dumps(fail_kinds, indent=1))
    print('mismatch kinds:', json.dumps(mism_kinds, indent=1))
    print('qemu-img message classes seen (%d):' % len(classes))
    for c, n in sorted(classes.items(), key=lambda x: -x[1]):
        print('  %6d  %s' % (n, c))
    shutil.rmtree(root, ignore_errors=True)
    return 0

def replay(a):
    if not shutil.which('qemu-img') or not shutil.which('qemu-io'):
        print('1..0 # SKIP qemu-img/qemu-io not installed')
        return 0
    files = sorted(f for f in os.listdir(a.corpus) if f.endswith('.json'))
    root = tempfile.mkdtemp(prefix='qcow2-repair-replay.')
    work = os.path.join(root, 'work')
    os.makedirs(work)
    bases, failed = {}, 0
    print('1..%d' % len(files))
    for n, f in enumerate(files, 1):
        rec = json.load(open(os.path.join(a.corpus, f)))
        gen = rec['generator']
        if gen not in bases:
            bases[gen] = make_base(gen, root)
        fails, mism, _ = judge(a.diskimg, gen, bases[gen], rec['mutations'],
                               rec.get('truncate'), work)
        # A recorded check mismatch must be gone too when the recipe says so.
        if rec.get('expect_same_check') and mism:
            fails += mism
        if fails and rec.get('known'):
            # a limitation documented in the recipe (README.md), kept so
            # that fixing it shows
            print('ok %d - %s # SKIP known: %s' % (n, f, rec['known']))
        elif fails:
            failed += 1
            print('not ok %d - %s: %s' % (n, f, '; '.join(fails)))
        else:
            print('ok %d - %s%s' % (n, f, (' # mismatch: ' + '; '.join(mism)) if mism else ''))
    shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0

def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest='mode', required=True)
    c = sub.add_parser('campaign')
    c.add_argument('--diskimg', required=True)
    c.add_argument('--seconds', type=float, default=60)
    c.add_argument('--seed', type=int, default=None)
    c.add_argument('--save')
    r = sub.add_parser('replay')
    r.add_argument('--diskimg', required=True)
    r.add_argument('corpus')
    a = p.parse_args()
    a.diskimg = os.path.abspath(a.diskimg)   # the tools run in the work directory
    return campaign(a) if a.mode == 'campaign' else replay(a)

if __name__ == '__main__':
    sys.exit(main())
