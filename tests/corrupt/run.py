#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the corrupt-image suite (cases made by gen.py): info, check,
convert -O raw and map on every damaged image, each under a 10 s timeout
and (unless --no-memory-limit, for ASan builds whose shadow memory needs
terabytes of address space) a 1 GiB address-space limit.  TAP output, one
test point per case and command.

A command passes when it
  - ends by itself within the timeout, not by a signal, with exit < 128,
    and without a sanitizer report;
  - exits non-zero with exactly one line on stderr that names one of the
    case's files -- check, whose report goes to stderr as qemu-img's does,
    may also exit 2 or 3 (the image was opened and the damage reported),
    or end its report with an error line that names a file or is one of
    qemu-img's fixed wordings ("Check failed: ...", no check for the format);
  - or exits 0 where the case documents why the damage is harmless there;
and the case's files are byte for byte what they were (sha256).

    run.py --diskimg DISKIMG [--no-memory-limit] [--keep DIR] [--only SUBSTRING] [--jobs N]

Skips (a TAP plan of 0) when gen.py cannot run (no qemu-img).
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 10
MEMORY_LIMIT = 1 << 30
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")


def digests(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def limits(memory):
    def apply():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    return apply


def command_line(diskimg, cmd, case, scratch):
    main = os.path.join(case["dir"], case["main"])
    img = [a.replace("{}", main) for a in case["open"]]
    if cmd == "info":
        return [diskimg, "info", *img]
    if cmd == "check":
        return [diskimg, "check", *img]
    if cmd == "convert":
        return [diskimg, "convert", "-O", "raw", *img, os.path.join(scratch, "out.raw")]
    return [diskimg, "map", "--output=json", *img]


def judge(cmd, case, rc, err, expect):
    """None when the outcome is what the case expects, else why not."""
    lines = [l for l in err.splitlines() if l.strip()]
    if rc is None:
        return f"timed out after {TIMEOUT} s"
    if rc < 0 or rc >= 128:
        return f"crashed (exit {rc})"
    if any(m in err for m in SANITIZER_MARKS):
        return "sanitizer report: " + next(l for l in lines if any(m in l for m in SANITIZER_MARKS))
    if expect == "ok":
        if rc == 0 or (cmd == "check" and rc == 63 and CHECK_WORDINGS[0] in err):
            return None   # (a format without check answers as qemu-img does)
        return f"exit {rc}, expected 0 ({case['why']}): {err[:300]!r}"
    if rc == 0:
        return "exit 0, expected an error"
    names = os.listdir(case["dir"])
    if cmd == "check":
        return judge_check(rc, lines, names, err)
    if len(lines) != 1:
        return f"exit {rc} with {len(lines)} lines on stderr: {err[:400]!r}"
    if not any(n in lines[0] for n in names):
        return f"the error names none of the case's files: {lines[0]!r}"
    return None


# qemu-img's own wordings of a check that did not run, which name no file
CHECK_WORDINGS = ("This image format does not support checks", "Check failed: ")


def judge_check(rc, lines, names, err):
    """check prints its report (qemu's "ERROR ..." lines) on stderr: 2 and
    3 are verdicts (corruptions, leaks) after a report; otherwise the last
    diskimg: line is the error and must name a file, unless it is one of
    qemu-img's fixed wordings."""
    if rc in (2, 3):
        return None
    errors = [l for l in lines if l.startswith("diskimg: ")]
    if not errors:
        return f"exit {rc} without an error line: {err[:300]!r}"
    last = errors[-1]
    if any(n in last for n in names) or any(w in last for w in CHECK_WORDINGS):
        return None
    return f"the error names none of the case's files: {last!r}"


def run_case(args, case, scratch):
    """The case's test points: a list of (ok, text)."""
    points = []
    os.makedirs(scratch, exist_ok=True)
    before = digests(case["dir"])
    for cmd in ("info", "check", "convert", "map"):
        argv = command_line(args.diskimg, cmd, case, scratch)
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=TIMEOUT,
                               preexec_fn=limits(not args.no_memory_limit), cwd=scratch)
            rc, err = p.returncode, p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            rc, err = None, ""
        out = os.path.join(scratch, "out.raw")
        if os.path.exists(out):
            os.unlink(out)
        problem = judge(cmd, case, rc, err, case["expect"][cmd])
        points.append((problem is None,
                       f"{case['name']}: {cmd}" + (f": {problem}" if problem else "")))
    after = digests(case["dir"])
    changed = [n for n in before if before[n] != after.get(n)]
    points.append((not changed, f"{case['name']}: files unchanged" +
                   (f": {', '.join(changed)} changed" if changed else "")))
    return points


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diskimg", required=True)
    ap.add_argument("--no-memory-limit", action="store_true")
    ap.add_argument("--keep", help="generate into DIR and keep it")
    ap.add_argument("--only", help="run only cases whose name contains this")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="cases run at once (default: up to 4, one per CPU)")
    args = ap.parse_args()
    args.diskimg = os.path.abspath(args.diskimg)

    tmp = tempfile.TemporaryDirectory(prefix="corrupt.")
    out = args.keep or os.path.join(tmp.name, "cases")
    scratch = os.path.join(tmp.name, "scratch")
    g = subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), args.diskimg, out],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if g.returncode == 77:
        print("1..0 # SKIP " + g.stderr.decode().strip())
        return 0      # TAP's way of skipping (meson reads the plan)
    if g.returncode:
        print("Bail out! gen.py failed: " + g.stderr.decode()[-2000:])
        return 1
    with open(os.path.join(out, "manifest.json")) as f:
        cases = json.load(f)
    if args.only:
        cases = [c for c in cases if args.only in c["name"]]

    n = failed = 0

    def tap(ok, text):
        nonlocal n, failed
        n += 1
        failed += not ok
        print(f"{'ok' if ok else 'not ok'} {n} - {text}", flush=True)

    # Cases run side by side (each process is short; under ASan start-up
    # dominates), reported in order.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_case, args, case, os.path.join(scratch, str(i)))
                   for i, case in enumerate(cases)]
        for f in futures:
            for ok, text in f.result():
                tap(ok, text)
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
