#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generates the corrupt-image suite: valid images made with qemu-img (or,
for the read-only formats bochs, cloop and dmg, built here byte by byte),
each then damaged in one way.

    gen.py DISKIMG OUTDIR

writes OUTDIR/<format>/<case>/... (every file a case needs, so that the
runner can check that none of them changed) and OUTDIR/manifest.json, a
list of cases:

    {"name": "qcow2/l1-past-eof", "format": "qcow2", "dir": ..., "main": ...,
     "open": [... "{}" ...], "expect": {"info": "fail", ...}, "why": "..."}

`open` is how the commands name the image ("{}" is the file); `expect`
says per command "fail" (the default: non-zero exit, one line on stderr
naming the file) or "ok" (exit 0 — the damage is harmless to that command,
and "why" says why).  Exit 77 when qemu-img is missing.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

COMMANDS = ("info", "check", "convert", "map")
# Why a command may succeed on some damage:
PAST_EOF = ("as qemu-img: a table or cluster past the end of the file reads as zeroes; "
            "check reports it")
NO_INFLATE = ("info, map (and check, which qemu-img words the same) read no compressed "
              "data: only reading the guest data (convert) finds the damage")
NO_CHAIN = ("info and check read this image only, not its backing chain (info as qemu-img; "
            "qemu-img check opens the chain and fails, or loops)")
PASSWORD = "corrupt-suite"
LUKS_OPEN = ["--object", "secret,id=sec0,data=" + PASSWORD,
             "--image-opts", "driver=luks,key-secret=sec0,file.filename={}"]


def guest_bytes(size, seed=1):
    """Data, zeroes and text in turn, so that images get allocated,
    unallocated and compressible clusters."""
    rnd = random.Random(seed)
    out = bytearray(size)
    step = 256 * 1024
    for i, at in enumerate(range(0, size, step)):
        n = min(step, size - at)
        if i % 3 == 0:
            out[at:at + n] = rnd.randbytes(n)
        elif i % 3 == 2:
            out[at:at + n] = (b"corrupt suite %08d\n" % i * (n // 20 + 1))[:n]
    return bytes(out)


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------ helpers

def put(buf, off, fmt, *values):
    struct.pack_into(fmt, buf, off, *values)


def get(buf, off, fmt):
    return struct.unpack_from(fmt, buf, off)[0]


def raw_deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -12)
    return c.compress(data) + c.flush()


_CRC32C = []


def crc32c(data):
    if not _CRC32C:
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC32C.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class Suite:
    def __init__(self, out, diskimg):
        self.out = out
        self.diskimg = diskimg
        self.base = os.path.join(out, "base")
        os.makedirs(self.base, exist_ok=True)
        self.cases = []
        self.raw = os.path.join(self.base, "guest.raw")
        with open(self.raw, "wb") as f:
            f.write(guest_bytes(4 << 20))

    def base_image(self, name, fmt, *opts, compress=False, source=None, tool="qemu-img"):
        """A valid image made by qemu-img (or by diskimg where qemu-img
        cannot write it: qcow compressed clusters)."""
        path = os.path.join(self.base, name)
        if not os.path.exists(path):
            args = [tool, "convert", "-O", fmt]
            if compress:
                args.append("-c")
            for o in opts:
                args += ["-o", o]
            if fmt == "luks":
                args[2:2] = ["--object", "secret,id=sec0,data=" + PASSWORD]
            subprocess.run([*args, source or self.raw, path], check=True,
                           stdout=subprocess.DEVNULL)
        with open(path, "rb") as f:
            return bytearray(f.read())

    def add(self, fmt, name, files, why="", ok=(), main=None, open_args=None):
        """files: {filename: bytes}; the first is the image unless `main`."""
        d = os.path.join(self.out, fmt, name)
        os.makedirs(d, exist_ok=True)
        for fname, data in files.items():
            with open(os.path.join(d, fname), "wb") as f:
                f.write(data)
        main = main or next(iter(files))
        if open_args is None:
            open_args = LUKS_OPEN if fmt == "luks" else ["-f", fmt, "{}"]
        expect = {c: ("ok" if c in ok else "fail") for c in COMMANDS}
        if ok and not why:
            raise ValueError(f"{fmt}/{name}: an exit 0 needs a reason")
        self.cases.append({"name": f"{fmt}/{name}", "format": fmt, "dir": d, "main": main,
                           "open": open_args, "expect": expect, "why": why})

    def write_manifest(self):
        with open(os.path.join(self.out, "manifest.json"), "w") as f:
            json.dump(self.cases, f, indent=1)


# -------------------------------------------------------------------- raw

def raw_cases(s):
    data = guest_bytes(64 << 10)
    io = lambda opts: ["--image-opts", "driver=raw," + opts + "file.filename={}"]
    all_ok = COMMANDS
    s.add("raw", "empty", {"x.raw": b""}, ok=all_ok,
          why="a raw image is any file: an empty one is a 0-byte disk")
    s.add("raw", "odd-size", {"x.raw": data[:1000]}, ok=all_ok,
          why="a raw image is any file; qemu rounds nothing, neither do we")
    s.add("raw", "qcow2-magic-forced-raw", {"x.raw": b"QFI\xfb" + data[4:]}, ok=all_ok,
          why="-f raw names the format: the magic of another is just data")
    s.add("raw", "offset-past-eof", {"x.raw": data}, open_args=io("offset=1M,"))
    s.add("raw", "size-past-eof", {"x.raw": data}, open_args=io("size=1M,"))
    s.add("raw", "offset-plus-size-past-eof", {"x.raw": data},
          open_args=io("offset=32k,size=48k,"))
    s.add("raw", "offset-huge", {"x.raw": data}, open_args=io("offset=8E,"))
    s.add("raw", "size-unaligned", {"x.raw": data}, open_args=io("size=1000,"))
    s.add("raw", "offset-unaligned", {"x.raw": data}, open_args=io("offset=100,"),
          ok=all_ok, why="an offset need not be aligned: the disk starts there")
    s.add("raw", "size-zero", {"x.raw": data}, open_args=io("size=0,"), ok=all_ok,
          why="a 0-byte window of the file is a valid empty disk")


# ------------------------------------------------------------------ qcow2

def qcow2_header(img):
    return {"l1_size": get(img, 36, ">I"), "l1": get(img, 40, ">Q"),
            "rt": get(img, 48, ">Q"), "cbits": get(img, 20, ">I"),
            "snaps": get(img, 64, ">Q"), "nsnaps": get(img, 60, ">I")}


def qcow2_first_l2(img):
    h = qcow2_header(img)
    for i in range(h["l1_size"]):
        e = get(img, h["l1"] + 8 * i, ">Q") & 0x00FFFFFFFFFFFE00
        if e:
            return h["l1"] + 8 * i, e
    raise ValueError("no L2 table")


def qcow2_first_entry(img, want_compressed=False):
    _, l2 = qcow2_first_l2(img)
    for i in range(1 << (qcow2_header(img)["cbits"] - 3)):
        e = get(img, l2 + 8 * i, ">Q")
        if e and bool(e & (1 << 62)) == want_compressed:
            return l2 + 8 * i, e
    raise ValueError("no such L2 entry")


def qcow2_cases(s):
    base = s.base_image("b.qcow2", "qcow2")
    h = qcow2_header(base)
    fname = "x.qcow2"

    def case(name, patch, ok=(), why="", img=None):
        img = bytearray(img if img is not None else base)
        patch(img)
        s.add("qcow2", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("qcow2", "truncated-header", {fname: bytes(base[:40])})
    s.add("qcow2", "truncated-after-header", {fname: bytes(base[:4096])})
    case("cluster-bits-huge", lambda i: put(i, 20, ">I", 31))
    case("cluster-bits-tiny", lambda i: put(i, 20, ">I", 8))
    case("size-huge", lambda i: put(i, 24, ">Q", 1 << 62))
    case("l1-size-huge", lambda i: put(i, 36, ">I", 0x7FFFFFFF))
    case("l1-too-small-for-size", lambda i: put(i, 24, ">Q", 1 << 50))
    case("l1-past-eof", lambda i: put(i, 40, ">Q", 1 << 40))
    case("refcount-table-past-eof", lambda i: put(i, 48, ">Q", 1 << 40),
         ok=("info", "convert", "map"),
         why="reading needs no refcounts (qemu-img opens it as well); check reports it")
    case("refcount-table-clusters-huge", lambda i: put(i, 56, ">I", 0xFFFFFFFF))
    case("refcount-order-huge", lambda i: put(i, 96, ">I", 7))
    case("header-length-huge", lambda i: put(i, 100, ">I", 0xFFFFFFF0))
    case("unknown-incompatible-feature", lambda i: put(i, 72, ">Q", 1 << 40))
    case("crypt-method-unknown", lambda i: put(i, 32, ">I", 9))
    case("snapshot-count-huge", lambda i: put(i, 60, ">I", 0x7FFFFFFF))

    def many_snapshots(i):
        put(i, 60, ">I", 65536)
        put(i, 64, ">Q", (len(i) - 65536) & ~0xFFFF)
    case("snapshots-65536-at-eof", many_snapshots)

    def header_ext_huge(i):
        # right after the 104/112-byte header: an unknown extension that
        # claims 4 GiB
        hl = get(i, 100, ">I")
        put(i, hl, ">II", 0x12345678, 0xFFFFFFF0)
    case("header-extension-huge", header_ext_huge)

    l1_at, l2 = qcow2_first_l2(base)
    case("l2-past-eof", lambda i: put(i, l1_at, ">Q", (1 << 40) | (1 << 63)),
         ok=("info", "convert", "map"), why="info reads no L2 table; " + PAST_EOF)
    case("l2-unaligned", lambda i: put(i, l1_at, ">Q", (l2 + 512) | (1 << 63)),
         ok=("info",), why="info reads no L2 table")
    case("l2-overlaps-l1", lambda i: put(i, l1_at, ">Q", h["l1"] | (1 << 63)),
         ok=("info", "convert", "map"), why="reads are not guarded (as in qemu): what the "
         "L1 table's bytes point at inside the file is read; check reports the overlap")
    case("l2-is-header", lambda i: put(i, l1_at, ">Q", 1 << 63),
         ok=("info", "convert", "map"), why="an L1 entry of offset 0 means unallocated: the "
         "disk reads zeroes there; check reports the flag and the leaked table")
    e_at, e = qcow2_first_entry(base)
    case("data-past-eof", lambda i: put(i, e_at, ">Q", (1 << 63) | (1 << 40)),
         ok=("info", "convert", "map"), why="info reads no L2 table; " + PAST_EOF)
    case("data-unaligned", lambda i: put(i, e_at, ">Q", (1 << 63) | ((e & ~(1 << 63)) + 512)),
         ok=("info",), why="info reads no L2 table")
    case("reserved-bits-in-l2", lambda i: put(i, e_at, ">Q", e | 0xFE),
         ok=("info", "convert", "map"), why="reads ignore the reserved bits, as qemu; "
         "check reports them")

    # compressed clusters
    cbase = s.base_image("c.qcow2", "qcow2", compress=True)
    cbits = qcow2_header(cbase)["cbits"]
    ce_at, ce = qcow2_first_entry(cbase, want_compressed=True)
    x = 62 - (cbits - 8)
    host = ce & ((1 << x) - 1)
    bomb = raw_deflate(bytes(4 << (cbits)))      # inflates to 4 clusters

    def inflate_past(i):
        # appended (a cluster of its own) so that no neighbour is damaged
        at = len(i)
        i += bomb + bytes((-len(bomb)) % (1 << cbits))
        sectors = (len(bomb) + 511) // 512 - 1
        put(i, ce_at, ">Q", (1 << 62) | (sectors << x) | at)
    case("compressed-inflates-past-cluster", inflate_past, img=cbase,
         ok=("info", "map"), why="info and map read no compressed data (check reports the "
         "cluster appended here unaccounted for)")
    case("compressed-past-eof", lambda i: put(i, ce_at, ">Q", (1 << 62) | (1 << 40)),
         img=cbase, ok=("info", "map"), why="info and map read no compressed data")

    def garbage_deflate(i):
        n = (((ce >> x) & ((1 << (62 - x)) - 1)) + 1) * 512 - (host & 511)
        i[host:host + min(n, 512)] = b"\xff" * min(n, 512)
    case("compressed-garbage", garbage_deflate, img=cbase, ok=("info", "check", "map"),
         why=NO_INFLATE)

    # snapshots
    sbase = bytearray(base)
    spath = os.path.join(s.base, "s.qcow2")
    if not os.path.exists(spath):
        with open(spath, "wb") as f:
            f.write(base)
        qemu_img("snapshot", "-c", "snap1", spath)
    with open(spath, "rb") as f:
        sbase = bytearray(f.read())
    so = qcow2_header(sbase)["snaps"]
    case("snapshot-extra-huge", lambda i: put(i, so + 36, ">I", 0xFFFFFFFF), img=sbase)
    case("snapshot-l1-huge", lambda i: put(i, so + 8, ">I", 0xFFFFFFFF), img=sbase)
    case("snapshot-table-past-eof", lambda i: put(i, 64, ">Q", 1 << 40), img=sbase)

    # backing chains: the name is patched into a copy of an image with a
    # backing file of the same name length
    bpath = os.path.join(s.base, "top.qcow2")
    if not os.path.exists(bpath):
        qemu_img("create", "-f", "qcow2", "-b", "aaaa.qcow2", "-F", "qcow2", "-u", bpath, "4M")
    with open(bpath, "rb") as f:
        top = bytearray(f.read())
    boff, bsize = get(top, 8, ">Q"), get(top, 16, ">I")

    def named(backing):
        i = bytearray(top)
        i[boff:boff + bsize] = backing.encode()
        return bytes(i)
    s.add("qcow2", "backing-self-loop", {"aaaa.qcow2": named("aaaa.qcow2")},
          ok=("info", "check"), why=NO_CHAIN)
    s.add("qcow2", "backing-loop-of-two", {"aaaa.qcow2": named("bbbb.qcow2"),
                                           "bbbb.qcow2": named("aaaa.qcow2")},
          ok=("info", "check"), why=NO_CHAIN)
    s.add("qcow2", "backing-missing", {"aaaa.qcow2": named("zzzz.qcow2")},
          ok=("info", "check"), why=NO_CHAIN)
    case("backing-name-huge", lambda i: put(i, 16, ">I", 0xFFFF), img=top)
    case("backing-name-past-eof", lambda i: put(i, 8, ">Q", 1 << 40), img=top)
    # a chain deeper than the core's limit of 256
    depth = {}
    for n in range(300):
        name = "d%03d.qcow2" % n
        nxt = "d%03d.qcow2" % (n + 1)
        i = bytearray(top)
        i[boff:boff + bsize] = (nxt if n < 299 else "aaaa.qcow2").encode()[:bsize].ljust(bsize, b"\0")
        depth[name] = bytes(i)
    # the name field is 10 bytes ("aaaa.qcow2"): "d001.qcow2" has the same length
    s.add("qcow2", "backing-chain-too-deep", depth, main="d000.qcow2", ok=("info", "check"),
          why=NO_CHAIN)


# ------------------------------------------------------------------- qcow

def qcow_cases(s):
    base = s.base_image("b.qcow", "qcow")
    fname = "x.qcow"
    cbits, l2bits, l1 = base[32], base[33], get(base, 40, ">Q")

    def case(name, patch, ok=(), why="", img=None):
        img = bytearray(img if img is not None else base)
        patch(img)
        s.add("qcow", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("qcow", "truncated-header", {fname: bytes(base[:30])})
    case("cluster-bits-huge", lambda i: put(i, 32, "B", 31))
    case("cluster-bits-tiny", lambda i: put(i, 32, "B", 2))
    case("l2-bits-huge", lambda i: put(i, 33, "B", 30))
    case("size-huge", lambda i: put(i, 24, ">Q", 1 << 62))
    case("l1-past-eof", lambda i: put(i, 40, ">Q", 1 << 40))
    case("crypt-method-unknown", lambda i: put(i, 36, ">I", 7))
    case("backing-name-huge", lambda i: (put(i, 8, ">Q", 48), put(i, 16, ">I", 0xFFFFFFFF)))
    case("backing-name-past-eof", lambda i: (put(i, 8, ">Q", 1 << 40), put(i, 16, ">I", 10)))
    l1_entries = ((4 << 20) + (1 << (cbits + l2bits)) - 1) >> (cbits + l2bits)
    l1_at = next(l1 + 8 * k for k in range(l1_entries) if get(base, l1 + 8 * k, ">Q"))
    l2 = get(base, l1_at, ">Q")
    case("l2-past-eof", lambda i: put(i, l1_at, ">Q", 1 << 40))
    case("l2-unaligned", lambda i: put(i, l1_at, ">Q", l2 + 100))
    e_at = next(l2 + 8 * k for k in range(1 << l2bits) if get(base, l2 + 8 * k, ">Q"))
    case("data-past-eof", lambda i: put(i, e_at, ">Q", 1 << 40), ok=("info",),
         why="info reads no L2 table")

    cbase = s.base_image("c.qcow", "qcow", compress=True, tool=s.diskimg)
    cl1 = get(cbase, 40, ">Q")
    cl2 = next(get(cbase, cl1 + 8 * k, ">Q") for k in range(l1_entries)
               if get(cbase, cl1 + 8 * k, ">Q"))
    ce_at = next(cl2 + 8 * k for k in range(1 << l2bits)
                 if get(cbase, cl2 + 8 * k, ">Q") >> 63)
    ce = get(cbase, ce_at, ">Q")
    host = ce & ((1 << (63 - cbits)) - 1)
    bomb = raw_deflate(bytes(4 << cbits))
    case("compressed-inflates-past-cluster",
         lambda i: (i.__setitem__(slice(host, host + len(bomb)), bomb),
                    put(i, ce_at, ">Q", (1 << 63) | (len(bomb) << (63 - cbits)) | host)),
         img=cbase, ok=("info", "map"), why="info and map read no compressed data")
    case("compressed-past-eof",
         lambda i: put(i, ce_at, ">Q", (1 << 63) | (100 << (63 - cbits)) | (1 << 40)),
         img=cbase, ok=("info",), why="info reads no L2 table")
    # a backing file that is the image itself
    top = bytearray(base[:48]) + b"x.qcow"
    put(top, 8, ">Q", 48)
    put(top, 16, ">I", 6)
    top += bytes((-len(top)) % 512)
    l1new = len(top)
    put(top, 40, ">Q", l1new)
    top += bytes(8 * l1_entries)
    s.add("qcow", "backing-self-loop", {fname: bytes(top)}, ok=("info",), why=NO_CHAIN)


# -------------------------------------------------------------------- qed

def qed_cases(s):
    base = s.base_image("b.qed", "qed")
    fname = "x.qed"
    cs, ts, l1 = get(base, 4, "<I"), get(base, 8, "<I"), get(base, 40, "<Q")

    def case(name, patch, ok=(), why="", img=None):
        img = bytearray(img if img is not None else base)
        patch(img)
        s.add("qed", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("qed", "truncated-header", {fname: bytes(base[:40])})
    case("cluster-size-not-power-of-two", lambda i: put(i, 4, "<I", 3 * 4096))
    case("cluster-size-huge", lambda i: put(i, 4, "<I", 1 << 30))
    case("table-size-huge", lambda i: put(i, 8, "<I", 1 << 20))
    case("table-size-zero", lambda i: put(i, 8, "<I", 0))
    case("header-size-huge", lambda i: put(i, 12, "<I", 0xFFFFFFFF))
    case("l1-past-eof", lambda i: put(i, 40, "<Q", 1 << 40))
    case("l1-unaligned", lambda i: put(i, 40, "<Q", l1 + 512))
    case("size-huge", lambda i: put(i, 48, "<Q", 1 << 62))
    case("unknown-feature", lambda i: put(i, 16, "<Q", 1 << 40))
    case("backing-name-huge", lambda i: (put(i, 16, "<Q", 1), put(i, 56, "<II", 64, 0xFFFFFFFF)))

    def self_backing(i):
        put(i, 16, "<Q", 1)
        put(i, 56, "<II", 64, 5)
        i[64:69] = b"x.qed"
    case("backing-self-loop", self_backing, ok=("info", "check"), why=NO_CHAIN)
    l1_at = next(l1 + 8 * k for k in range(cs * ts // 8) if get(base, l1 + 8 * k, "<Q"))
    l2 = get(base, l1_at, "<Q")
    case("l2-past-eof", lambda i: put(i, l1_at, "<Q", 1 << 40), ok=("info",),
         why="info reads no L2 table")
    case("l2-unaligned", lambda i: put(i, l1_at, "<Q", l2 + 512), ok=("info",),
         why="info reads no L2 table")
    e_at = next(l2 + 8 * k for k in range(cs * ts // 8) if get(base, l2 + 8 * k, "<Q") > 1)
    case("data-past-eof", lambda i: put(i, e_at, "<Q", 1 << 40), ok=("info",),
         why="info reads no L2 table")
    case("l2-overlaps-l1", lambda i: put(i, l1_at, "<Q", l1), ok=("info",),
         why="info reads no L2 table")


# -------------------------------------------------------------------- vdi

def vdi_cases(s):
    base = s.base_image("b.vdi", "vdi")
    fname = "x.vdi"
    bmap, data_off = get(base, 0x154, "<I"), get(base, 0x158, "<I")

    def case(name, patch, ok=(), why=""):
        img = bytearray(base)
        patch(img)
        s.add("vdi", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("vdi", "truncated-header", {fname: bytes(base[:300])})
    s.add("vdi", "truncated-bmap", {fname: bytes(base[:bmap + 2])}, ok=("info",),
          why="info reads no block map")
    case("version-unknown", lambda i: put(i, 0x44, "<I", 0x00020000))
    case("header-size-huge", lambda i: put(i, 0x48, "<I", 0xFFFFFFF0), ok=COMMANDS,
         why="header_size is not used (as in qemu): version 1.1 fixes the layout and the "
         "offsets say where the rest lies")
    case("image-type-unknown", lambda i: put(i, 0x4C, "<I", 9), ok=COMMANDS,
         why="the type is not used (as in qemu): the block map says what is allocated")
    case("bmap-past-eof", lambda i: put(i, 0x154, "<I", 0xFFFFFE00))
    case("data-past-eof", lambda i: put(i, 0x158, "<I", 0xFFFFFE00), ok=COMMANDS,
         why=PAST_EOF.replace("; check reports it", "") + " (qemu-img check passes it too)")
    case("sector-size-4096", lambda i: put(i, 0x168, "<I", 4096))
    case("block-size-zero", lambda i: put(i, 0x178, "<I", 0))
    case("block-size-huge", lambda i: put(i, 0x178, "<I", 1 << 31))
    case("blocks-in-image-huge", lambda i: put(i, 0x180, "<I", 0xFFFFFFF0))
    case("disk-size-beyond-blocks", lambda i: put(i, 0x170, "<Q", 1 << 50))
    case("blocks-allocated-beyond-blocks", lambda i: put(i, 0x184, "<I", 0xFFFFFFF0))
    case("bmap-entry-past-eof", lambda i: put(i, bmap, "<I", 0x7FFFFFF0), ok=("info",),
         why="info reads no block map")
    case("bmap-entries-overlap", lambda i: put(i, bmap + 4, "<I", get(i, bmap, "<I")),
         ok=("info",), why="info reads no block map")


# -------------------------------------------------------------------- vpc

def vpc_checksum(buf, at):
    put(buf, at, ">I", 0)
    put(buf, at, ">I", ~sum(buf) & 0xFFFFFFFF)


def vpc_cases(s):
    base = s.base_image("b.vpc", "vpc")
    fname = "x.vhd"
    n = len(base)
    dyn = get(base, 16, ">Q")
    bat = get(base, dyn + 16, ">Q")

    def footer(fix, patch):
        def f(i):
            for at in (0, n - 512):
                foot = bytearray(i[at:at + 512])
                patch(foot)
                if fix:
                    vpc_checksum(foot, 64)
                i[at:at + 512] = foot
        return f

    def dynamic(patch, fix=True):
        def f(i):
            d = bytearray(i[dyn:dyn + 1024])
            patch(d)
            if fix:
                vpc_checksum(d, 36)
            i[dyn:dyn + 1024] = d
        return f

    def case(name, patch, ok=(), why=""):
        img = bytearray(base)
        patch(img)
        s.add("vpc", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("vpc", "truncated-header", {fname: bytes(base[:100])})
    s.add("vpc", "truncated-dynamic-header", {fname: bytes(base[:dyn + 100])})
    case("footer-checksum-bad", footer(False, lambda f: put(f, 64, ">I", 0x12345678)))
    case("dynamic-header-checksum-bad", dynamic(lambda d: put(d, 36, ">I", 0x12345678), False),
         ok=COMMANDS, why="qemu reads it anyway; diskimg warns and reads it too")
    case("dynamic-header-past-eof", footer(True, lambda f: put(f, 16, ">Q", 1 << 40)))
    case("dynamic-cookie-bad", dynamic(lambda d: d.__setitem__(slice(0, 8), b"notspars")))
    case("bat-past-eof", dynamic(lambda d: put(d, 16, ">Q", 1 << 40)))
    case("bat-entries-huge", dynamic(lambda d: put(d, 28, ">I", 0xFFFFFFF0)))
    case("block-size-zero", dynamic(lambda d: put(d, 32, ">I", 0)))
    case("block-size-not-power-of-two", dynamic(lambda d: put(d, 32, ">I", 3 * 512)))
    case("block-size-huge", dynamic(lambda d: put(d, 32, ">I", 1 << 31)))
    case("disk-type-unknown", footer(True, lambda f: put(f, 60, ">I", 9)))
    chs = ("the size of an image qemu made comes from its CHS geometry, not from "
           "current_size (as in qemu)")
    case("size-huge", footer(True, lambda f: put(f, 48, ">Q", 1 << 62)), ok=COMMANDS, why=chs)
    case("size-beyond-bat", footer(True, lambda f: put(f, 48, ">Q", 1 << 40)), ok=COMMANDS,
         why=chs)
    first = next(k for k in range(get(base, dyn + 28, ">I"))
                 if get(base, bat + 4 * k, ">I") != 0xFFFFFFFF)
    case("bat-entry-past-eof", lambda i: put(i, bat + 4 * first, ">I", 0x7FFFFFF0))
    case("bat-entry-into-footer",
         lambda i: put(i, bat + 4 * first, ">I", (n - 512) // 512))


# ------------------------------------------------------------------- vhdx

def vhdx_fix(buf, at, length):
    put(buf, at + 4, "<I", 0)
    put(buf, at + 4, "<I", crc32c(bytes(buf[at:at + length])))


def vhdx_cases(s):
    base = s.base_image("b.vhdx", "vhdx")
    fname = "x.vhdx"
    K = 1024
    # region table entries: BAT and metadata
    regions = {}
    for k in range(get(base, 192 * K + 8, "<I")):
        e = 192 * K + 16 + 32 * k
        regions[bytes(base[e:e + 16])] = (e - 192 * K, get(base, e + 16, "<Q"),
                                           get(base, e + 24, "<I"))
    bat_guid = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
    meta_guid = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
    bat_entry, bat_off, _ = regions[bat_guid]
    meta_entry, meta_off, _ = regions[meta_guid]

    def headers(patch):
        def f(i):
            for at in (64 * K, 128 * K):
                patch(i, at)
                vhdx_fix(i, at, 4 * K)
        return f

    def region(patch):
        def f(i):
            for at in (192 * K, 256 * K):
                patch(i, at)
                vhdx_fix(i, at, 64 * K)
        return f

    def meta_item(guid_hex):
        guid = bytes.fromhex(guid_hex)
        for k in range(get(base, meta_off + 10, "<H")):
            e = meta_off + 32 + 32 * k
            if base[e:e + 16] == guid:
                return meta_off + get(base, e + 16, "<I"), e
        raise ValueError("no metadata item " + guid_hex)
    file_params, _ = meta_item("3767a1ca36fa434db3b633f0aa44e76b")
    disk_size, _ = meta_item("2442a52f1bcd7648b2115dbed83bf4b8")
    lsec, _ = meta_item("1dbf41816fa90947ba47f233a8faab5f")

    def case(name, patch, ok=(), why=""):
        img = bytearray(base)
        patch(img)
        s.add("vhdx", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("vhdx", "truncated-header", {fname: bytes(base[:100 * K])})
    s.add("vhdx", "truncated-region-table", {fname: bytes(base[:200 * K])})
    case("file-identifier-bad", lambda i: i.__setitem__(slice(0, 8), b"notvhdx!"))
    case("header-crc-bad", lambda i: [put(i, at + 4, "<I", 0x12345678)
                                      for at in (64 * K, 128 * K)])
    case("region-table-crc-bad", lambda i: [put(i, at + 4, "<I", 0x12345678)
                                            for at in (192 * K, 256 * K)])
    case("region-count-huge", region(lambda i, at: put(i, at + 8, "<I", 0xFFFFFFF0)))
    case("bat-region-past-eof", region(lambda i, at: put(i, at + bat_entry + 16, "<Q", 1 << 40)))
    case("bat-region-length-huge",
         region(lambda i, at: put(i, at + bat_entry + 24, "<I", 0xFFF00000)))
    case("metadata-region-past-eof",
         region(lambda i, at: put(i, at + meta_entry + 16, "<Q", 1 << 40)))
    case("regions-overlap", region(lambda i, at: put(i, at + bat_entry + 16, "<Q", meta_off)))
    case("log-version-unknown", headers(lambda i, at: put(i, at + 64, "<H", 7)))
    case("log-past-eof", headers(lambda i, at: (
        i.__setitem__(slice(at + 48, at + 64), b"\x11" * 16),
        put(i, at + 68, "<IQ", 1 << 20, 1 << 40))))
    case("metadata-count-huge", lambda i: put(i, meta_off + 10, "<H", 0xFFFF))
    case("block-size-zero", lambda i: put(i, file_params, "<I", 0))
    case("block-size-not-power-of-two", lambda i: put(i, file_params, "<I", 3 << 20))
    case("block-size-huge", lambda i: put(i, file_params, "<I", 1 << 31))
    case("disk-size-huge", lambda i: put(i, disk_size, "<Q", 1 << 62))
    case("logical-sector-size-bad", lambda i: put(i, lsec, "<I", 1000))
    first = next(k for k in range(64) if get(base, bat_off + 8 * k, "<Q") & 7 == 6)
    ent = get(base, bat_off + 8 * first, "<Q")
    case("bat-entry-past-eof", lambda i: put(i, bat_off + 8 * first, "<Q", (1 << 40 << 20) | 6))
    case("bat-entry-into-headers", lambda i: put(i, bat_off + 8 * first, "<Q", 6))
    case("bat-state-unknown", lambda i: put(i, bat_off + 8 * first, "<Q", (ent & ~7) | 5),
         ok=COMMANDS, why="a reserved block state reads as unallocated (as in qemu)")


# ------------------------------------------------------------------- vmdk

def vmdk_cases(s):
    base = s.base_image("b.vmdk", "vmdk")
    fname = "x.vmdk"
    gd = get(base, 56, "<Q") * 512
    gt = get(base, gd, "<I") * 512

    def case(name, patch, ok=(), why="", img=None, name_as=fname):
        img = bytearray(img if img is not None else base)
        patch(img)
        s.add("vmdk", name, {name_as: bytes(img)}, ok=ok, why=why)

    s.add("vmdk", "truncated-header", {fname: bytes(base[:40])})
    case("version-unknown", lambda i: put(i, 4, "<I", 9))
    case("grain-size-zero", lambda i: put(i, 20, "<Q", 0))
    case("grain-size-not-power-of-two", lambda i: put(i, 20, "<Q", 384), ok=COMMANDS,
         why="qemu takes any grain size up to 128 MiB; the arithmetic needs no power of two")
    case("grain-size-huge", lambda i: put(i, 20, "<Q", 1 << 40))
    case("capacity-huge", lambda i: put(i, 12, "<Q", 1 << 60))
    case("gtes-per-gt-huge", lambda i: put(i, 44, "<I", 0xFFFFFFF0))
    case("gd-past-eof", lambda i: (put(i, 56, "<Q", 1 << 40), put(i, 48, "<Q", 1 << 40)))
    case("descriptor-size-huge", lambda i: put(i, 36, "<Q", 1 << 40))
    case("gd-entry-past-eof", lambda i: put(i, gd, "<I", 0xFFFFFFF0), ok=("info",),
         why="info reads no grain directory")
    e_at = next(gt + 4 * k for k in range(512) if get(base, gt + 4 * k, "<I") > 1)
    case("grain-past-eof", lambda i: put(i, e_at, "<I", 0xFFFFFFF0), ok=("info",),
         why="info reads no grain table")

    # streamOptimized: a compressed grain that inflates to four grains
    sbase = s.base_image("s.vmdk", "vmdk", "subformat=streamOptimized")
    # qemu-img writes the grain directory's place into the header (no
    # footer is needed then)
    sgd = get(sbase, 56, "<Q")
    if sgd == 0xFFFFFFFFFFFFFFFF:
        sgd = get(sbase, len(sbase) - 1024 + 56, "<Q")
    sgd *= 512
    sgt = get(sbase, sgd, "<I") * 512
    g_at = next(sgt + 4 * k for k in range(512) if get(sbase, sgt + 4 * k, "<I") > 1)
    grain = get(sbase, g_at, "<I") * 512
    grain_bytes = get(sbase, 20, "<Q") * 512
    old_len = get(sbase, grain + 8, "<I")
    bomb = zlib.compress(bytes(4 * grain_bytes), 9)
    assert len(bomb) <= old_len

    def inflate(i):
        i[grain + 12:grain + 12 + len(bomb)] = bomb
        put(i, grain + 8, "<I", len(bomb))
    case("compressed-grain-inflates-past-grain", inflate, img=sbase,
         ok=("info", "check", "map"), why=NO_INFLATE)
    case("compressed-grain-garbage",
         lambda i: i.__setitem__(slice(grain + 12, grain + 12 + 64), b"\xff" * 64),
         img=sbase, ok=("info", "check", "map"), why=NO_INFLATE)
    case("compressed-grain-size-huge", lambda i: put(i, grain + 8, "<I", 0xFFFFFFF0),
         img=sbase, ok=("info", "check", "map"), why=NO_INFLATE)

    # descriptor files
    def desc(extents, ctype="monolithicFlat", extra=""):
        return ("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
                f'createType="{ctype}"\n\n# Extent description\n{extents}\n'
                f"# The Disk Data Base\n#DDB\n{extra}").encode()
    flat = bytes(64 * 1024)
    s.add("vmdk", "extent-is-descriptor-itself",
          {"d.vmdk": desc('RW 128 SPARSE "d.vmdk"', "twoGbMaxExtentSparse")})
    s.add("vmdk", "extent-missing", {"d.vmdk": desc('RW 128 FLAT "nothere.img" 0')},
          ok=("info",), why="a metadata-only open (info) opens no extent (the trust policy)")
    s.add("vmdk", "extent-count-huge",
          {"d.vmdk": desc("".join('RW 1 FLAT "f.img" 0\n' for _ in range(200000))),
           "f.img": flat})
    s.add("vmdk", "descriptor-line-huge",
          {"d.vmdk": desc('RW 128 FLAT "f.img" 0', extra="ddb.x = \"" + "a" * (2 << 20) + "\"\n"),
           "f.img": flat})
    s.add("vmdk", "extent-sectors-huge",
          {"d.vmdk": desc('RW 18446744073709551615 FLAT "f.img" 0'), "f.img": flat})
    s.add("vmdk", "extent-offset-huge",
          {"d.vmdk": desc('RW 128 FLAT "f.img" 18446744073709551615'), "f.img": flat})
    s.add("vmdk", "extent-json-name",
          {"d.vmdk": desc('RW 128 FLAT "json:{\\"driver\\":\\"raw\\"}" 0'), "f.img": flat})
    s.add("vmdk", "parent-loop",
          {"d.vmdk": desc('RW 128 FLAT "f.img" 0', extra="")
           .replace(b"parentCID=ffffffff", b'parentCID=12345678\nparentFileNameHint="d.vmdk"'),
           "f.img": flat}, main="d.vmdk", ok=("info", "check"), why=NO_CHAIN)


# -------------------------------------------------------------- parallels

def parallels_cases(s):
    base = s.base_image("b.img", "parallels")
    fname = "x.hds"
    data_off = get(base, 48, "<I") * 512

    def case(name, patch, ok=(), why=""):
        img = bytearray(base)
        patch(img)
        s.add("parallels", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("parallels", "truncated-header", {fname: bytes(base[:40])})
    s.add("parallels", "truncated-bat", {fname: bytes(base[:66])}, ok=("info",),
          why="info reads no BAT")
    case("version-unknown", lambda i: put(i, 16, "<I", 7))
    case("cluster-size-zero", lambda i: put(i, 28, "<I", 0))
    case("cluster-size-huge", lambda i: put(i, 28, "<I", 0x80000000))
    case("bat-entries-huge", lambda i: put(i, 32, "<I", 0xFFFFFFF0))
    case("sectors-huge", lambda i: put(i, 36, "<Q", 1 << 62))
    case("sectors-beyond-bat", lambda i: put(i, 36, "<Q", 1 << 33), ok=COMMANDS,
         why="a disk larger than its BAT reads zeroes past it (4 TiB here; qemu-img map "
         "asserts on it)")
    case("data-offset-past-eof", lambda i: put(i, 48, "<I", 0xFFFFFFF0), ok=("info",),
         why="info reads no BAT")
    case("data-offset-zero", lambda i: put(i, 48, "<I", 0), ok=COMMANDS,
         why="data_off 0 means 'after the BAT' (older images), as in qemu")
    first = next(k for k in range(get(base, 32, "<I")) if get(base, 64 + 4 * k, "<I"))
    case("bat-entry-past-eof", lambda i: put(i, 64 + 4 * first, "<I", 0xFFFFFFF0),
         ok=("info",), why="info reads no BAT entry")
    case("bat-entry-into-header", lambda i: put(i, 64 + 4 * first, "<I", 1),
         ok=COMMANDS, why="as qemu: reads are not guarded, check reports no overlap with the "
         "header (qemu-img check neither)")
    case("extension-past-eof", lambda i: put(i, 56, "<Q", 1 << 40))


# ------------------------------------------------------------------- luks

def luks_cases(s):
    base = s.base_image("b.luks", "luks", "iter-time=10", "key-secret=sec0",
                        source=None)
    fname = "x.luks"
    payload = get(base, 104, ">I") * 512

    def case(name, patch, ok=(), why=""):
        img = bytearray(base)
        patch(img)
        s.add("luks", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("luks", "truncated-header", {fname: bytes(base[:100])})
    s.add("luks", "truncated-key-material", {fname: bytes(base[:4096])})
    case("version-2", lambda i: put(i, 6, ">H", 2))
    case("payload-past-eof", lambda i: put(i, 104, ">I", 0xFFFFFFF0))
    case("payload-inside-header", lambda i: put(i, 104, ">I", 0))
    case("key-bytes-zero", lambda i: put(i, 108, ">I", 0))
    case("key-bytes-huge", lambda i: put(i, 108, ">I", 1 << 20))
    case("digest-iterations-huge", lambda i: put(i, 164, ">I", 0xFFFFFFFF))
    case("keyslot-iterations-huge", lambda i: put(i, 208 + 4, ">I", 0xFFFFFFFF))
    case("keyslot-stripes-huge", lambda i: put(i, 208 + 44, ">I", 0xFFFFFFFF))
    case("keyslot-material-past-eof", lambda i: put(i, 208 + 40, ">I", 0xFFFFFFF0))
    case("cipher-unknown", lambda i: i.__setitem__(slice(8, 40), b"rot13".ljust(32, b"\0")))
    case("hash-unknown", lambda i: i.__setitem__(slice(72, 104), b"md4".ljust(32, b"\0")))
    case("no-active-keyslot", lambda i: [put(i, 208 + 48 * k, ">I", 0x0000DEAD)
                                         for k in range(8)],
         ok=("info",), why="info reads the header only and needs no key")
    case("name-not-terminated", lambda i: i.__setitem__(slice(8, 40), b"a" * 32))


# ------------------------------------------------------------------ bochs

def bochs_image(catalog=8, extent=32 * 1024, disk=None):
    disk = disk if disk is not None else catalog * extent
    h = bytearray(512)
    h[0:22] = b"Bochs Virtual HD Image"
    h[32:39] = b"Redolog"
    h[48:55] = b"Growing"
    put(h, 64, "<IIIII", 0x00020000, 512, catalog, 512, extent)
    put(h, 88, "<Q", disk)
    cat = bytearray(4 * catalog)
    body = bytearray()
    for k in range(catalog):
        if k % 2:
            put(cat, 4 * k, "<I", 0xFFFFFFFF)
            continue
        put(cat, 4 * k, "<I", k // 2)
        bitmap = bytearray(512)
        bitmap[:extent // 512 // 8] = b"\xff" * (extent // 512 // 8)
        body += bitmap + guest_bytes(extent, k)
    return bytearray(h + cat + body)


def bochs_cases(s):
    base = bochs_image()
    fname = "x.bochs"

    def case(name, patch, ok=(), why=""):
        img = bytearray(base)
        patch(img)
        s.add("bochs", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("bochs", "truncated-header", {fname: bytes(base[:100])})
    s.add("bochs", "truncated-catalog", {fname: bytes(base[:514])})
    case("version-unknown", lambda i: put(i, 64, "<I", 0x00030000))
    case("header-size-huge", lambda i: put(i, 68, "<I", 0xFFFFFE00))
    case("catalog-huge", lambda i: put(i, 72, "<I", 0xFFFFFFF0))
    case("bitmap-huge", lambda i: put(i, 76, "<I", 0xFFFFFFF0))
    case("extent-zero", lambda i: put(i, 80, "<I", 0))
    case("extent-not-sectors", lambda i: put(i, 80, "<I", 1000))
    case("extent-huge", lambda i: put(i, 80, "<I", 0x80000000))
    case("disk-beyond-catalog", lambda i: put(i, 88, "<Q", 1 << 50))
    case("disk-huge", lambda i: put(i, 88, "<Q", 1 << 63))
    case("catalog-entry-past-eof", lambda i: put(i, 512, "<I", 0x7FFFFFF0))
    case("type-not-redolog", lambda i: i.__setitem__(slice(32, 39), b"Nothing"))


# ------------------------------------------------------------------ cloop

CLOOP_MAGIC = (b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && "
               b"mount -r -t iso9660 /dev/cloop $1\n")


def cloop_image(block=64 * 1024, blocks=4, chunks=None):
    chunks = chunks or [zlib.compress(guest_bytes(block, k), 9) for k in range(blocks)]
    h = bytearray(128)
    h[:len(CLOOP_MAGIC)] = CLOOP_MAGIC
    h += struct.pack(">II", block, len(chunks))
    at = len(h) + 8 * (len(chunks) + 1)
    offs = bytearray()
    for c in chunks:
        offs += struct.pack(">Q", at)
        at += len(c)
    offs += struct.pack(">Q", at)
    return bytearray(h + offs + b"".join(chunks))


def cloop_cases(s):
    base = cloop_image()
    fname = "x.cloop"

    def case(name, patch, ok=(), why="", img=None):
        img = bytearray(img if img is not None else base)
        patch(img)
        s.add("cloop", name, {fname: bytes(img)}, ok=ok, why=why)

    s.add("cloop", "truncated-header", {fname: bytes(base[:130])})
    s.add("cloop", "truncated-offsets", {fname: bytes(base[:150])})
    case("block-size-zero", lambda i: put(i, 128, ">I", 0))
    case("block-size-not-sectors", lambda i: put(i, 128, ">I", 1000))
    case("block-size-huge", lambda i: put(i, 128, ">I", 0x80000000))
    case("blocks-huge", lambda i: put(i, 132, ">I", 0xFFFFFFF0))
    # 64 MiB blocks (qemu's maximum) that blocks of a few KiB can never fill:
    # refused before the 64 MiB block buffer is allocated
    case("block-size-beyond-expansion", lambda i: put(i, 128, ">I", 64 << 20),
         img=cloop_image(chunks=[zlib.compress(bytes(64 * 1024), 9)] * 4))
    case("offsets-decreasing", lambda i: put(i, 136 + 16, ">Q", 10))
    case("offset-past-eof", lambda i: put(i, 136 + 32, ">Q", 1 << 40))
    case("block-longer-than-bound",
         lambda i: (put(i, 136 + 8, ">Q", 1 << 30), put(i, 136 + 16, ">Q", 1 << 30)))
    bomb = cloop_image(chunks=[zlib.compress(bytes(4 * 64 * 1024), 9)] * 4)
    case("block-inflates-past-block", lambda i: None, img=bomb, ok=("info", "map"),
         why=NO_INFLATE)
    garbage = cloop_image(chunks=[b"\xff" * 200] * 4)
    case("block-garbage", lambda i: None, img=garbage, ok=("info", "map"), why=NO_INFLATE)
    short = cloop_image(chunks=[zlib.compress(bytes(1000))] * 4)
    # (17-byte blocks cannot inflate to 64 KiB: refused at open)
    case("block-inflates-short", lambda i: None, img=short)


# -------------------------------------------------------------------- dmg

def dmg_mish(chunks, sectors):
    m = bytearray(204)
    m[0:4] = b"mish"
    put(m, 4, ">I", 1)
    put(m, 0x10, ">Q", sectors)
    put(m, 0xC8, ">I", len(chunks))
    for c in chunks:
        m += struct.pack(">IIQQQQ", *c)
    return bytes(m)


def dmg_plist(mish, wrap=52):
    import base64
    b64 = base64.b64encode(mish).decode()
    data = "".join("\n\t\t\t\t" + b64[k:k + wrap] for k in range(0, len(b64), wrap))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
            "\t<key>resource-fork</key>\n\t<dict>\n\t\t<key>blkx</key>\n\t\t<array>\n"
            "\t\t\t<dict>\n\t\t\t\t<key>Data</key>\n\t\t\t\t<data>" + data +
            "\n\t\t\t\t</data>\n\t\t\t\t<key>Name</key>\n\t\t\t\t<string>disk</string>\n"
            "\t\t\t</dict>\n\t\t</array>\n\t</dict>\n</dict>\n</plist>\n").encode()


def dmg_image(fork, chunks, sectors, plist=None):
    """fork: the data fork; chunks: (type, comment, sector, sectors, offset, length)."""
    xml = plist if plist is not None else dmg_plist(dmg_mish(chunks, sectors))
    koly = bytearray(512)
    koly[0:4] = b"koly"
    put(koly, 4, ">II", 4, 512)
    put(koly, 0x20, ">Q", len(fork))
    put(koly, 0xD8, ">QQ", len(fork), len(xml))
    put(koly, 0x1E8, ">IQ", 1, sectors)
    return bytearray(fork + xml + koly)


def dmg_cases(s):
    raw = guest_bytes(64 * 1024, 3)
    z = zlib.compress(guest_bytes(64 * 1024, 4), 9)
    fork = raw + z
    good = [(1, 0, 0, 128, 0, len(raw)), (0x80000005, 0, 128, 128, len(raw), len(z)),
            (2, 0, 256, 128, 0, 0), (0xFFFFFFFF, 0, 384, 0, 0, 0)]
    fname = "x.dmg"

    def chunks_case(name, chunks, sectors=384, ok=(), why="", data=fork):
        s.add("dmg", name, {fname: bytes(dmg_image(data, chunks, sectors))}, ok=ok, why=why)

    base = dmg_image(fork, good, 384)
    s.add("dmg", "truncated-trailer", {fname: bytes(base[-300:])})
    broken = bytearray(base)
    put(broken, len(broken) - 512 + 4, ">I", 9)
    s.add("dmg", "koly-version-unknown", {fname: bytes(broken)}, ok=COMMANDS,
          why="the version is not used (as in qemu): the block table says everything")
    for name, off, val in (("plist-past-eof", 0xD8, 1 << 40),
                           ("plist-length-huge", 0xE0, 1 << 40)):
        b = bytearray(base)
        put(b, len(b) - 512 + off, ">Q", val)
        s.add("dmg", name, {fname: bytes(b)})
    s.add("dmg", "plist-malformed", {fname: bytes(dmg_image(fork, good, 384,
          plist=b"<plist><dict><key>resource-fork</key><dict><key>blkx"))})
    s.add("dmg", "plist-nesting-deep", {fname: bytes(dmg_image(fork, good, 384,
          plist=b"<plist>" + b"<array>" * 200000 + b"</array>" * 200000 + b"</plist>"))})
    long_line = dmg_plist(dmg_mish(good, 384), wrap=1 << 30)
    s.add("dmg", "plist-long-base64-line", {fname: bytes(dmg_image(fork, good, 384,
          plist=long_line.replace(b"<string>disk", b"<string>" + b"d" * (4 << 20))))},
          ok=("info", "convert", "map", "check"),
          why="a long but well-formed plist (4 MiB name, within the 16 MiB plist cap) is valid")
    chunks_case("chunk-past-eof", [(1, 0, 0, 128, 1 << 40, 65536)] + good[3:], 128)
    chunks_case("chunk-length-huge", [(0x80000005, 0, 0, 128, 0, 1 << 40)] + good[3:], 128)
    chunks_case("chunk-sectors-huge", [(2, 0, 0, 1 << 60, 0, 0)] + good[3:], 1 << 60)
    chunks_case("chunk-inflates-past-chunk",
                [(0x80000005, 0, 0, 128, 0, len(zlib.compress(bytes(1 << 20), 9)))] + good[3:],
                128, data=zlib.compress(bytes(1 << 20), 9), ok=("info", "map"),
                why=NO_INFLATE)
    chunks_case("chunk-type-unknown", [(0x12345, 0, 0, 128, 0, 0)] + good[3:], 128)
    chunks_case("chunks-overlap", [(1, 0, 0, 128, 0, 65536), (1, 0, 64, 128, 0, 65536)] +
                good[3:], 192)
    mish = bytearray(dmg_mish(good, 384))
    put(mish, 0xC8, ">I", 0xFFFFFFF0)
    s.add("dmg", "chunk-count-huge", {fname: bytes(dmg_image(fork, good, 384,
          plist=dmg_plist(bytes(mish))))})
    chunks_case("raw-chunk-garbage-zlib", [(0x80000005, 0, 0, 128, 0, 512)] + good[3:], 128,
                data=b"\xff" * 512, ok=("info", "map"), why=NO_INFLATE)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen.py DISKIMG OUTDIR")
    if not shutil.which("qemu-img"):
        print("qemu-img is not installed: the valid images cannot be made", file=sys.stderr)
        sys.exit(77)
    s = Suite(sys.argv[2], sys.argv[1])
    for gen in (raw_cases, qcow2_cases, qcow_cases, qed_cases, vdi_cases, vpc_cases,
                vhdx_cases, vmdk_cases, parallels_cases, luks_cases, bochs_cases,
                cloop_cases, dmg_cases):
        gen(s)
    s.write_manifest()
    print(f"{len(s.cases)} cases in {s.out}")


if __name__ == "__main__":
    main()
