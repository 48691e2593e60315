#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Crash consistency under SIGKILL (docs/crash-consistency.md).

Every scenario is one diskimg command that writes an image: convert to each
writable format, and commit, rebase, resize, amend, snapshot -c and
bitmap --add on qcow2.  For each one:

  1. the inputs are made with qemu-img/qemu-io (not with diskimg);
  2. the command runs once to completion under killshim.so in counting mode,
     which numbers every write/sync/truncate/allocate call on the test's
     files: that gives the range of kill points and the completed state;
  3. for kill points drawn from a seeded RNG over that range, the inputs are
     restored and the command runs again with the shim SIGKILLing it just
     before call N;
  4. the result is judged by qemu-img (check, info, and the guest content
     read back by qemu-img convert -O raw) against the scenario's list of
     acceptable states, and every input the command must not modify is
     compared by sha256.

TAP output, one test point per kill point.  Options (also read from the
environment, so `meson test` can be given them):

    crash.py --diskimg DISKIMG --shim killshim.so
             [--seed S | CRASH_SEED]        (default: a fixed seed)
             [--points K | CRASH_POINTS]    kill points per scenario (12)
             [--loss-points L | CRASH_LOSS_POINTS]  power-loss points per
                                            in-place scenario (6)
             [--loss-only]                  only those
             [--only NAME | CRASH_ONLY]     scenarios whose name contains NAME
             [--at N | CRASH_AT]            only kill point N (replay)
             [--skip NAME]                  leave out one scenario
             [--keep DIR]                   leave the failing states in DIR

Every failure prints the line that replays it.  Skips (plan 0) without
qemu-img.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

SECTOR = 512
MIB = 1 << 20
SIZE = 8 * MIB
SECRET = ["--object", "secret,id=sec0,data=crash-test-passphrase"]
MIN_POINTS = 200


class Failure(Exception):
    """The state a kill left is not one of the acceptable ones."""


def run(argv, check=True, env=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.decode().strip()}")
    return p


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def qemu_io(fmt, path, *cmds):
    argv = ["qemu-io", "-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    run(argv + [path])


# ---------------------------------------------------------------- reading

class Image:
    """How qemu-img names one image: plain file + format, or image-opts."""

    def __init__(self, path, fmt):
        self.path, self.fmt = path, fmt

    def open_args(self):
        if self.fmt == "luks":
            return SECRET + ["--image-opts",
                             f"driver=luks,key-secret=sec0,file.filename={self.path}"]
        return ["-f", self.fmt, self.path]


def read_guest(img, scratch, snapshot=None):
    """The guest content as qemu-img reads it, or None when it cannot."""
    out = os.path.join(scratch, "guest.raw")
    argv = ["qemu-img", "convert", "-U"]
    if snapshot:
        argv += ["-l", f"snapshot.name={snapshot}"]
    argv += img.open_args() + ["-O", "raw", out]
    p = run(argv, check=False)
    if p.returncode != 0:
        return None
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def qemu_check(img):
    """(exit code, parsed JSON or None) of qemu-img check."""
    p = run(["qemu-img", "check", "-U", "--output=json"] + img.open_args(), check=False)
    try:
        return p.returncode, json.loads(p.stdout.decode())
    except ValueError:
        return p.returncode, None


def qemu_info(img):
    p = run(["qemu-img", "info", "-U", "--output=json"] + img.open_args(), check=False)
    return json.loads(p.stdout.decode()) if p.returncode == 0 else None


def marked_dirty(info):
    """Whether the header says the image needs a check (qcow2 dirty/corrupt)."""
    if not info:
        return False
    data = info.get("format-specific", {}).get("data", {})
    return bool(info.get("dirty-flag") or data.get("corrupt"))


def require_consistent(img, allow_flagged):
    """Passes when check says consistent (0, or 3 with leaks only).

    Returns "flagged" when the image is inconsistent but says so (dirty or
    corrupt bit, or, where allow_flagged, a check or open that fails).
    """
    rc, res = qemu_check(img)
    if rc == 0 or rc == 63:        # 63: the format has no check; content decides
        return "consistent"
    if rc == 3 and res and not res.get("corruptions") and not res.get("check-errors"):
        return "leaks"
    if marked_dirty(qemu_info(img)):
        return "flagged"
    if allow_flagged and rc in (1, 2):
        return "flagged"
    raise Failure(f"qemu-img check exit {rc}: {json.dumps(res) if res else 'no report'}")


def sectors_each_one_of(got, allowed, what):
    """Every sector of `got` equals the same sector of one of `allowed`."""
    length = len(allowed[0])
    if len(got) != length:
        raise Failure(f"{what}: {len(got)} bytes, expected {length}")
    if any(got == a for a in allowed):
        return
    for off in range(0, length, SECTOR):
        piece = got[off:off + SECTOR]
        if not any(a[off:off + SECTOR] == piece for a in allowed):
            raise Failure(f"{what}: sector at offset {off} is none of the allowed states")


# ------------------------------------------------------------- scenarios

def make_raw_source(path):
    """8 MiB with data, a zero run and holes, in pieces of several sizes."""
    run(["qemu-img", "create", "-q", "-f", "raw", path, str(SIZE)])
    rng = random.Random(1)   # fixed content: the seed only picks kill points
    with open(path, "r+b") as f:
        for i in range(40):
            off = rng.randrange(0, SIZE // 4096) * 4096
            length = rng.choice([4096, 65536, 3 * 65536 + 4096])
            f.seek(off)
            f.write(bytes([(i * 7 + 1) & 0xff]) * min(length, SIZE - off))


def make_qcow2(path, *opts, backing=None, size=SIZE):
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        argv += ["-b", os.path.basename(backing), "-F", "qcow2"]
    for o in opts:
        argv += ["-o", o]
    run(argv + [path, str(size)])


def fill_qcow2(path, seed, zeroes=True):
    """Data at scattered offsets; with zeroes, also zero clusters."""
    rng = random.Random(seed)
    cmds = []
    for i in range(24):
        off = rng.randrange(0, SIZE // 65536) * 65536
        cmds.append(f"write -P {(seed * 31 + i) & 0xff} {off} {rng.choice([4096, 65536, 131072])}")
    if zeroes:
        for i in range(4):
            cmds.append(f"write -z {rng.randrange(0, SIZE // 65536) * 65536} 65536")
    qemu_io("qcow2", path, *cmds)


class Scenario:
    """One command and its acceptable post-crash states.

    setup(d) makes the inputs in d; argv(d) is the diskimg command line
    (without the binary); `unchanged` lists inputs that must keep their
    bytes; `judge(d, scratch, ctx)` raises Failure for a bad state, with
    ctx holding what `prepare` learnt from the untouched inputs and the
    completed run.
    """

    unchanged = ()
    power_loss = False   # convert writes with -t unsafe: no barriers to test
    loss_everywhere = False

    def prepare(self, d, scratch):
        return {}

    def completed(self, d, scratch, ctx):
        pass


class Convert(Scenario):
    """convert to a new file: any prefix of the copy is acceptable.

    The target either opens with a consistent check and reads, sector by
    sector, as the completed target or as zeroes (what the copy had not
    reached) -- or as an image of size 0, when create was killed before it
    set the size, as qemu-img's create does too -- or it is flagged: its check or open fails, or its header is
    marked dirty/corrupt.  It is never an image that reads other data.
    """

    def __init__(self, name, fmt, opts=(), src_fmt="raw", compress=False):
        self.name, self.fmt, self.opts = name, fmt, list(opts)
        self.src_fmt, self.compress = src_fmt, compress
        self.src = "src." + src_fmt
        self.unchanged = (self.src,)

    def setup(self, d):
        if self.src_fmt == "raw":
            make_raw_source(os.path.join(d, self.src))
        else:
            make_qcow2(os.path.join(d, self.src), "cluster_size=4096")
            fill_qcow2(os.path.join(d, self.src), 3)

    def argv(self, d):
        a = ["convert"] + (SECRET if self.fmt == "luks" else []) + ["-f", self.src_fmt, "-O", self.fmt]
        if self.compress:
            a.append("-c")
        for o in self.opts:
            a += ["-o", o]
        return a + [os.path.join(d, self.src), os.path.join(d, "dst")]

    def target(self, d):
        return Image(os.path.join(d, "dst"), self.fmt)

    def prepare(self, d, scratch):
        return {"source": read_guest(Image(os.path.join(d, self.src), self.src_fmt), scratch)}

    def completed(self, d, scratch, ctx):
        got = read_guest(self.target(d), scratch)
        if got is None or got[:SIZE] != ctx["source"] or any(got[SIZE:]):
            raise RuntimeError(f"{self.name}: the completed convert does not read as its source")
        ctx["final"] = got

    def judge(self, d, scratch, ctx):
        img = self.target(d)
        if not os.path.exists(img.path):
            return "no target"
        state = require_consistent(img, allow_flagged=True)
        got = read_guest(img, scratch)
        if got is None:
            if state == "consistent" and self.fmt != "luks":
                raise Failure("qemu-img check passes but the image cannot be read")
            return "flagged"
        if not got:
            return state + ", size not yet set"   # create had not reached its resize
        sectors_each_one_of(got, [ctx["final"], bytes(len(ctx["final"]))], "target")
        return state


class ConvertLuks(Convert):
    """convert to LUKS: as Convert, but a sector the copy had not reached
    holds no ciphertext (zero bytes in the file) rather than reading as
    zeroes, since zero bytes decrypt to noise."""

    def __init__(self, name):
        super().__init__(name, "luks", ["key-secret=sec0", "iter-time=10"])

    def judge(self, d, scratch, ctx):
        img = self.target(d)
        if not os.path.exists(img.path):
            return "no target"
        got = read_guest(img, scratch)
        if not got:
            return "flagged" if got is None else "size not yet set"
        info = qemu_info(img)
        payload = info["format-specific"]["data"]["payload-offset"]
        with open(img.path, "rb") as f:
            f.seek(payload)
            cipher = f.read(len(got))
        final, blank = ctx["final"], bytes(SECTOR)
        if len(got) != len(final):
            raise Failure(f"target: {len(got)} bytes, expected {len(final)}")
        for off in range(0, len(got), SECTOR):
            if got[off:off + SECTOR] == final[off:off + SECTOR]:
                continue
            if cipher[off:off + SECTOR].ljust(SECTOR, b"\0") != blank:
                raise Failure(f"target: sector at offset {off} is neither the source's "
                              "nor unwritten")
        return "consistent"


class InPlace(Scenario):
    """A qcow2 image modified in place (base class of the others).

    These commands write with the writeback cache and flush, so they are
    also killed with a simulated power loss (writes since the last sync of
    their file kept or lost at random), which tests the flush barriers.
    """
    image = "img.qcow2"
    power_loss = True

    def img(self, d):
        return Image(os.path.join(d, self.image), "qcow2")

    def prepare(self, d, scratch):
        return {"old": read_guest(self.img(d), scratch)}

    def completed(self, d, scratch, ctx):
        ctx["new"] = read_guest(self.img(d), scratch)
        ctx["new_info"] = qemu_info(self.img(d))

    def judge_content(self, got, ctx):
        sectors_each_one_of(got, [ctx["old"]], "guest content")

    def judge(self, d, scratch, ctx):
        state = require_consistent(self.img(d), allow_flagged=False)
        got = read_guest(self.img(d), scratch)
        if got is None:
            raise Failure("qemu-img cannot read the image")
        self.judge_content(got, ctx)
        self.judge_metadata(d, scratch, ctx)
        return state

    def judge_metadata(self, d, scratch, ctx):
        pass


class Commit(InPlace):
    """commit top into base (and empty top, as qemu-img does without -d).

    base: consistent, each sector its old content or top's view.  top:
    consistent, and the chain seen through top reads exactly what it did
    before (what top loses is already in base).
    """
    name = "commit"
    image = "base.qcow2"

    def setup(self, d):
        make_qcow2(os.path.join(d, "base.qcow2"), "cluster_size=4096")
        fill_qcow2(os.path.join(d, "base.qcow2"), 5)
        make_qcow2(os.path.join(d, "top.qcow2"), backing=os.path.join(d, "base.qcow2"))
        fill_qcow2(os.path.join(d, "top.qcow2"), 6)

    def argv(self, d):
        return ["commit", "-f", "qcow2", os.path.join(d, "top.qcow2")]

    def prepare(self, d, scratch):
        ctx = super().prepare(d, scratch)
        ctx["view"] = read_guest(Image(os.path.join(d, "top.qcow2"), "qcow2"), scratch)
        return ctx

    def judge_content(self, got, ctx):
        sectors_each_one_of(got, [ctx["old"], ctx["view"]], "base")

    def judge_metadata(self, d, scratch, ctx):
        top = Image(os.path.join(d, "top.qcow2"), "qcow2")
        require_consistent(top, allow_flagged=False)
        if read_guest(top, scratch) != ctx["view"]:
            raise Failure("the chain through top no longer reads what it did")


class Rebase(InPlace):
    """safe rebase of top from base1 onto base2: the guest view of top,
    through whichever backing file its header names, never changes; both
    bases keep their bytes."""
    name = "rebase"
    image = "top.qcow2"
    unchanged = ("base1.qcow2", "base2.qcow2")

    def setup(self, d):
        for name, seed in (("base1.qcow2", 7), ("base2.qcow2", 8)):
            make_qcow2(os.path.join(d, name), "cluster_size=4096")
            fill_qcow2(os.path.join(d, name), seed)
        make_qcow2(os.path.join(d, "top.qcow2"), backing=os.path.join(d, "base1.qcow2"))
        fill_qcow2(os.path.join(d, "top.qcow2"), 9, zeroes=False)

    def argv(self, d):
        return ["rebase", "-f", "qcow2", "-b", "base2.qcow2", "-F", "qcow2",
                os.path.join(d, "top.qcow2")]

    def judge_metadata(self, d, scratch, ctx):
        backing = (qemu_info(self.img(d)) or {}).get("backing-filename")
        if backing not in ("base1.qcow2", "base2.qcow2"):
            raise Failure(f"top names backing file {backing!r}")


class Resize(InPlace):
    """resize: the size is the old or the new one; the guest content below
    min(old, new) never changes; a grown tail reads zeroes; when shrinking,
    the part being cut off may read its old data or zeroes until the header
    says the new size."""

    def __init__(self, name, size, shrink=False):
        self.name, self.size, self.shrink = name, size, shrink

    def setup(self, d):
        make_qcow2(os.path.join(d, self.image), "cluster_size=4096")
        fill_qcow2(os.path.join(d, self.image), 10)

    def argv(self, d):
        return ["resize", "-f", "qcow2"] + (["--shrink"] if self.shrink else []) + \
            [os.path.join(d, self.image), str(self.size)]

    def judge_content(self, got, ctx):
        old = ctx["old"]
        keep = min(len(old), self.size)
        if len(got) not in (len(old), self.size):
            raise Failure(f"virtual size {len(got)} is neither {len(old)} nor {self.size}")
        if got[:keep] != old[:keep]:
            sectors_each_one_of(got[:keep], [old[:keep]], "content below the smaller size")
        tail = got[keep:]
        if len(got) > len(old):
            if any(tail):
                raise Failure("the grown part does not read as zeroes")
        elif tail:   # still the old size: the part being cut off
            sectors_each_one_of(tail, [old[keep:], bytes(len(tail))], "the part being cut off")


class Amend(InPlace):
    """amend: the guest content never changes; the option is old or new.

    compat=0.10 is power-lost at every call: zero clusters with an
    allocation are filled with zeroes and then their L2 entries lose the
    zero flag, and nothing ordered the two (seed 14, call 19 read stale
    data) until the L2 cache's barrier flushed the file every time.
    """

    def __init__(self, name, option, create_opts, loss_everywhere=False):
        self.name, self.option, self.create_opts = name, option, create_opts
        self.loss_everywhere = loss_everywhere

    def setup(self, d):
        make_qcow2(os.path.join(d, self.image), *self.create_opts)
        fill_qcow2(os.path.join(d, self.image), 11)

    def argv(self, d):
        return ["amend", "-f", "qcow2", "-o", self.option, os.path.join(d, self.image)]


class Snapshot(InPlace):
    """snapshot -c: content unchanged; the snapshot is absent or complete
    (it reads what the image read)."""
    name = "snapshot-create"

    def setup(self, d):
        make_qcow2(os.path.join(d, self.image), "cluster_size=4096")
        fill_qcow2(os.path.join(d, self.image), 12)
        run(["qemu-img", "snapshot", "-c", "first", os.path.join(d, self.image)])

    def argv(self, d):
        return ["snapshot", "-c", "crash", os.path.join(d, self.image)]

    def judge_metadata(self, d, scratch, ctx):
        snaps = [s["name"] for s in (qemu_info(self.img(d)) or {}).get("snapshots", [])]
        if "first" not in snaps:
            raise Failure(f"the existing snapshot is gone: {snaps}")
        for name in snaps:
            if read_guest(self.img(d), scratch, snapshot=name) != ctx["old"]:
                raise Failure(f"snapshot {name} does not read what the image read")


class Bitmap(InPlace):
    """bitmap --add: content unchanged; the bitmap is absent or present,
    and a present one is not marked in-use/inconsistent."""
    name = "bitmap-add"

    def setup(self, d):
        make_qcow2(os.path.join(d, self.image), "cluster_size=4096")
        fill_qcow2(os.path.join(d, self.image), 13)
        run(["qemu-img", "bitmap", "--add", os.path.join(d, self.image), "first"])

    def argv(self, d):
        return ["bitmap", "--add", os.path.join(d, self.image), "crash"]

    def judge_metadata(self, d, scratch, ctx):
        data = (qemu_info(self.img(d)) or {}).get("format-specific", {}).get("data", {})
        bitmaps = {b["name"]: b["flags"] for b in data.get("bitmaps", [])}
        if "first" not in bitmaps:
            raise Failure(f"the existing bitmap is gone: {bitmaps}")
        for name, flags in bitmaps.items():
            if "in-use" in flags:
                raise Failure(f"bitmap {name} is left in-use: {flags}")


def scenarios():
    c = Convert
    return [
        c("convert-raw-qcow2", "qcow2"),
        c("convert-qcow2-qcow2", "qcow2", ["cluster_size=4096"], src_fmt="qcow2"),
        c("convert-qcow2-qcow2-c", "qcow2", src_fmt="qcow2", compress=True),
        Commit(),
        Rebase(),
        Resize("resize-grow", 12 * MIB),
        Resize("resize-shrink", 5 * MIB, shrink=True),
        Amend("amend-compat", "compat=0.10", ["cluster_size=4096"], loss_everywhere=True),
        Amend("amend-refcount-bits", "refcount_bits=4", ["cluster_size=4096"]),
        Snapshot(),
        Bitmap(),
        c("convert-qcow", "qcow"),
        c("convert-qed", "qed"),
        c("convert-vmdk-sparse", "vmdk", ["subformat=monolithicSparse"]),
        c("convert-vmdk-stream", "vmdk", ["subformat=streamOptimized"]),
        c("convert-vdi", "vdi"),
        c("convert-vpc", "vpc"),
        c("convert-vhdx", "vhdx"),
        c("convert-parallels", "parallels"),
        ConvertLuks("convert-luks"),
    ]


# ----------------------------------------------------------------- driver

def restore(pristine, work):
    shutil.rmtree(work, ignore_errors=True)
    run(["cp", "-a", "--sparse=always", pristine, work])


def run_diskimg(args, sc, d, kill_at, count_file, lose=None):
    env = dict(os.environ, LD_PRELOAD=args.shim, CRASH_DIR=os.path.realpath(d) + "/",
               CRASH_KILL_AT=str(kill_at), CRASH_COUNT=count_file)
    if lose is not None:
        env["CRASH_LOSE"] = str(lose)
    p = subprocess.run([args.diskimg] + sc.argv(d), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, cwd=d)
    return p.returncode, p.stderr.decode()


def counted(count_file):
    try:
        with open(count_file) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class Runner:
    def __init__(self, args, root):
        self.args, self.root, self.n, self.failed = args, root, 0, 0

    def tap(self, ok, text, diag=None):
        self.n += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} - {text}", flush=True)
        if diag:
            for line in diag.splitlines():
                print("# " + line, flush=True)
        if not ok:
            self.failed += 1

    def scenario(self, sc):
        base = os.path.join(self.root, sc.name)
        pristine, work, scratch = base + ".orig", base + ".work", base + ".scratch"
        os.makedirs(pristine)
        os.makedirs(scratch)
        sc.setup(pristine)
        sums = {f: sha256(os.path.join(pristine, f)) for f in sc.unchanged}
        ctx = sc.prepare(pristine, scratch)

        restore(pristine, work)
        count_file = os.path.join(scratch, "count")
        rc, err = run_diskimg(self.args, sc, work, 0, count_file)
        if rc != 0:
            raise RuntimeError(f"{sc.name}: the uncounted run failed ({rc}): {err.strip()}")
        total = counted(count_file)
        sc.completed(work, scratch, ctx)
        if total == 0:
            raise RuntimeError(f"{sc.name}: the shim counted no calls")

        done = 0
        for lose in (False, True):
            if lose and not (sc.power_loss and self.args.loss_points):
                continue
            if lose != self.args.loss_only and self.args.at:
                continue   # a replay is of one kind of kill
            points = self.kill_points(sc, total, lose)
            if not points:
                continue
            kind = "power-loss points" if lose else "kill points"
            print(f"# {sc.name}: {total} calls, {kind} {points}", flush=True)
            for at in points:
                self.one(sc, pristine, work, scratch, sums, ctx, at, total, lose)
            done += len(points)
        return done

    def kill_points(self, sc, total, lose):
        if self.args.at:
            return [self.args.at]
        rng = random.Random(f"{self.args.seed}:{sc.name}" + (":loss" if lose else ""))
        k = min(self.args.loss_points if lose else self.args.points, total)
        if lose and sc.loss_everywhere and k:
            k = total   # a regression: every point, so the old failure is among them
        return sorted(rng.sample(range(1, total + 1), k))

    def one(self, sc, pristine, work, scratch, sums, ctx, at, total, lose):
        restore(pristine, work)
        rc, err = run_diskimg(self.args, sc, work, at, os.path.join(scratch, "killcount"),
                              lose=self.args.seed_number if lose else None)
        label = f"{sc.name} {'power loss' if lose else 'killed'} at call {at}/{total}"
        replay = (f"replay: crash.py --diskimg ... --seed {self.args.seed} "
                  f"--only {sc.name} --at {at}" + (" --loss-only" if lose else ""))
        try:
            if rc not in (-9, 0):
                raise Failure(f"diskimg exited {rc} instead of being killed: {err.strip()}")
            for f, s in sums.items():
                if sha256(os.path.join(work, f)) != s:
                    raise Failure(f"{f} changed")
            state = sc.judge(work, scratch, ctx)
            self.tap(True, f"{label}: {state}" + ("" if rc == -9 else " (ran to the end)"))
        except Failure as e:
            self.tap(False, f"{label}: {e}", replay)
            if self.args.keep:
                kept = os.path.join(self.args.keep, f"{sc.name}-{at}")
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(work, kept)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--diskimg", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--seed", default=os.environ.get("CRASH_SEED", "14"))
    ap.add_argument("--points", type=int, default=int(os.environ.get("CRASH_POINTS", "12")))
    ap.add_argument("--loss-points", type=int,
                    default=int(os.environ.get("CRASH_LOSS_POINTS", "6")))
    ap.add_argument("--loss-only", action="store_true",
                    help="only the simulated power losses (with --at: replay one)")
    ap.add_argument("--only", default=os.environ.get("CRASH_ONLY"))
    ap.add_argument("--at", type=int, default=int(os.environ.get("CRASH_AT", "0")))
    ap.add_argument("--skip", action="append", default=[],
                    help="leave out the scenario of this name")
    ap.add_argument("--keep")
    return ap.parse_args()


def main():
    args = parse_args()
    if args.loss_only:
        args.points = 0
    # the shim's loss choices come from a number; any seed text gives one
    args.seed_number = int(hashlib.sha256(str(args.seed).encode()).hexdigest()[:15], 16)
    args.diskimg, args.shim = os.path.abspath(args.diskimg), os.path.abspath(args.shim)
    if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
        print("1..0 # SKIP qemu-img and qemu-io are needed to make and judge the images")
        return 0
    print(f"# seed {args.seed}, {args.points} kill points per scenario, "
          f"{args.loss_points} power-loss points per in-place scenario", flush=True)
    start = time.monotonic()
    chosen = [s for s in scenarios()
              if (not args.only or args.only in s.name) and s.name not in args.skip]
    with tempfile.TemporaryDirectory(prefix="diskimg-crash-") as root:
        runner = Runner(args, root)
        points = 0
        for sc in chosen:
            try:
                points += runner.scenario(sc)
            except RuntimeError as e:
                runner.tap(False, f"{sc.name}: setup", str(e))
    elapsed = time.monotonic() - start
    print(f"# {points} kill points in {elapsed:.0f} s, {runner.failed} failed", flush=True)
    if not args.only and not args.at and points < MIN_POINTS:
        runner.tap(False, f"at least {MIN_POINTS} kill points", f"only {points}")
    print(f"1..{runner.n}")
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
