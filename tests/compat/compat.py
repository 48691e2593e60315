#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Side-by-side compatibility suite: diskimg against qemu-img 7.2.

Every case of cases.txt (see the header of that file for its syntax) is
set up once in a scratch directory, the directory is copied once per tool,
and the command line is run in each copy with qemu-img and with diskimg.
Compared: exit code, stdout (JSON structurally, member order included;
text with the tool name and directory normalised), the first stderr line
(without the "qemu-img:"/"diskimg:" prefix), and every file the command
created or changed (qemu-img info/check/map --output=json of each copy, and
qemu-img compare of the two).

A difference is accepted only when known-differences.txt lists it (with its
reason); docs/compatibility.md carries the same list, and --check-docs /
--update-docs keep the two in step.

usage: compat.py [--diskimg PATH] [-k GLOB] [-v] [-j N] [--list]
       compat.py --check-docs | --update-docs
"""
import argparse
import concurrent.futures
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CASES = os.path.join(HERE, 'cases.txt')
KNOWN = os.path.join(HERE, 'known-differences.txt')
DOC = os.path.join(ROOT, 'docs', 'compatibility.md')
DOC_BEGIN = '<!-- known-differences: generated from tests/compat/known-differences.txt by tests/compat/compat.py --update-docs -->'
DOC_END = '<!-- known-differences: end -->'
ASPECTS = ('exit', 'stdout', 'stderr', 'image')
QEMU_IMG = 'qemu-img'
DEFAULT_TIMEOUT = 20
# qemu-img's own verdicts on a written image (info, check, map, compare,
# convert) are not what a case measures: qemu-img compare of two empty 1 TiB
# vmdk images takes 17 s on a quiet machine, so under CI load the 20 s guard
# for our commands would fail a case for qemu-img's slowness.
VERIFY_TIMEOUT = 120


# ---------------------------------------------------------------- data files

class Case:
    def __init__(self, lineno, text, setup, command, options):
        self.lineno = lineno
        self.text = text          # the expanded line, as known-differences match it
        self.setup = setup        # shell text, run once with qemu-img
        self.command = command    # argv after the tool name
        self.options = options    # {key: value} from a leading [k=v,...]
        self.seconds = 0.0        # wall time of the last run, for the slowest list


# Formats whose images cannot be created, nor opened for data, without a
# secret (--object secret,... and key-secret=): the generic {fmt} lines do
# not apply to them, so cases.txt gives them lines of their own.
SECRET_FORMATS = {'luks'}


def list_formats(diskimg):
    """The format names (those that need a secret left out: their lines are
    in cases.txt of their own), and the subset that cannot create images."""
    out = json.loads(subprocess.run([diskimg, '--list-formats', '--output=json'],
                                    capture_output=True, text=True, check=True).stdout)['plugins']
    out = [p for p in out if p['name'] not in SECRET_FORMATS]
    return (sorted(p['name'] for p in out), {p['name'] for p in out if not p['writable']})


def expand(line, formats, read_only=frozenset()):
    """Repeats a line for every format named by {fmt} (and {fmt2}).  A
    read-only format (bochs, cloop, dmg) is left out where the SETUP names
    it: the setup would have qemu-img create or write such an image, which
    neither tool can; its command lines without setup still run."""
    lines = [line]
    setup = line.rpartition(' | ')[0]
    for key in ('{fmt}', '{fmt2}'):
        if key in line:
            usable = [f for f in formats if not (f in read_only and key in setup)]
            lines = [ln.replace(key, f) for ln in lines for f in usable]
    return lines


def parse_cases(path, formats, read_only=frozenset()):
    cases, macros = [], {}
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            line = re.sub(r'@(\w+)(?!\s*=)', lambda m: macros.get(m.group(1), m.group(0)), line)
            m = re.match(r'@(\w+)\s*=\s*(.*)$', line)
            if m:
                macros[m.group(1)] = m.group(2)
                continue
            options = {}
            m = re.match(r'\[([^\]]*)\]\s*', line)
            if m:
                for item in m.group(1).split(','):
                    k, _, v = item.partition('=')
                    options[k.strip()] = v.strip()
                line = line[m.end():]
            line = line[1:].strip() if line.startswith('|') else line
            for text in expand(line, formats, read_only):
                setup, sep, command = text.rpartition(' | ')
                if not sep:
                    setup, command = '', text
                cases.append(Case(lineno, text, setup.strip(),
                                  shlex.split(command), options))
    return cases


class Known:
    def __init__(self, lineno, pattern, aspects, reason):
        self.lineno, self.pattern, self.reason = lineno, pattern, reason
        self.aspects = set(ASPECTS) if aspects == 'all' else set(aspects.split(','))
        self.excused = {}          # aspect -> how many cases this entry excused for it

    def covers(self, case, aspect):
        # a case without setup matches as "| COMMAND" too
        return aspect in self.aspects and (fnmatch.fnmatchcase(case.text, self.pattern) or
                                           fnmatch.fnmatchcase('| ' + case.text, self.pattern))


def report_usage(known):
    # Unused aspects are shown too: an entry listing more aspects than differ
    # hides future differences in those aspects.
    for k in known:
        counts = ', '.join(f'{a}={k.excused.get(a, 0)}' for a in ASPECTS if a in k.aspects)
        print(f'USAGE known-differences.txt:{k.lineno}: {counts} :: {k.pattern}')


def parse_known(path):
    known = []
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            parts = [p.strip() for p in line.split(' :: ')]
            if len(parts) != 3:
                sys.exit(f'{path}:{lineno}: expected "PATTERN :: ASPECTS :: REASON"')
            aspects = parts[1]
            bad = set(aspects.split(',')) - set(ASPECTS) - {'all'}
            if bad:
                sys.exit(f'{path}:{lineno}: unknown aspect {", ".join(sorted(bad))}')
            known.append(Known(lineno, *parts))
    return known


# ------------------------------------------------------------- docs section

def doc_table(known):
    rows = ['| case (glob over the case line) | compared | reason |', '|---|---|---|']
    for k in known:
        aspects = 'all' if k.aspects == set(ASPECTS) else ', '.join(sorted(k.aspects))
        pattern = k.pattern.replace('|', '\\|')
        reason = k.reason.replace('|', '\\|')
        rows.append(f'| `{pattern}` | {aspects} | {reason} |')
    return '\n'.join(rows)


def doc_section(known):
    return f'{DOC_BEGIN}\n{doc_table(known)}\n{DOC_END}'


def docs_in_step(known, update):
    with open(DOC) as f:
        text = f.read()
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start < 0 or end < 0:
        print(f'{DOC}: markers of the known-differences section are missing')
        return False
    current = text[start:end + len(DOC_END)]
    wanted = doc_section(known)
    if current == wanted:
        return True
    if update:
        with open(DOC, 'w') as f:
            f.write(text[:start] + wanted + text[end + len(DOC_END):])
        print(f'{DOC}: known-differences section updated')
        return True
    print(f'{DOC}: its known-differences section does not match '
          f'{KNOWN}; run tests/compat/compat.py --update-docs')
    return False


# ---------------------------------------------------------------- running

def snapshot_files(d):
    """name -> (size, mtime_ns) of every regular file under d."""
    files = {}
    for dirpath, _, names in os.walk(d):
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if os.path.isfile(p) and not os.path.islink(p):
                files[os.path.relpath(p, d)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return files


def run(argv, cwd, timeout, env):
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout,
                           env=env, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode(errors='replace'), p.stderr.decode(errors='replace')
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace')
        return 'timeout', out, ''
    except OSError as e:
        return 'not run', '', str(e)


def normalise_text(text, d):
    text = text.replace(d + '/', '').replace(d, '.')
    text = re.sub(r'\bqemu-img\b|\bdiskimg\b', 'TOOL', text)
    text = re.sub(r'\d+(\.\d+)? seconds', 'N seconds', text)
    text = re.sub(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d', 'DATE', text)
    return text


def first_stderr_line(text, d):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ''
    line = normalise_text(lines[0], d)
    return re.sub(r'^TOOL: ', '', line)


def json_pairs(text):
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: ('obj', pairs))
    except ValueError:
        return None


def describe_json_difference(a, b, path='$'):
    """First structural difference of two json_pairs trees, or None."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        ka, kb = [k for k, _ in a[1]], [k for k, _ in b[1]]
        if ka != kb:
            return f'{path}: members {ka} vs {kb}'
        for (k, va), (_, vb) in zip(a[1], b[1]):
            d = describe_json_difference(va, vb, f'{path}.{k}')
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f'{path}: {len(a)} vs {len(b)} elements'
        for i, (va, vb) in enumerate(zip(a, b)):
            d = describe_json_difference(va, vb, f'{path}[{i}]')
            if d:
                return d
        return None
    if type(a) != type(b) or a != b:
        return f'{path}: {json.dumps(unpair(a))} vs {json.dumps(unpair(b))}'
    return None


def unpair(v):
    if isinstance(v, tuple):
        return {k: unpair(x) for k, x in v[1]}
    if isinstance(v, list):
        return [unpair(x) for x in v]
    return v


def compare_stdout(q, d, qdir, ddir):
    jq, jd = json_pairs(q), json_pairs(d)
    if jq is not None and jd is not None and q.strip()[:1] in '[{':
        return describe_json_difference(jq, jd)
    nq, nd = normalise_text(q, qdir), normalise_text(d, ddir)
    if nq == nd:
        return None
    ql, dl = nq.splitlines(), nd.splitlines()
    for i, (a, b) in enumerate(zip(ql, dl)):
        if a != b:
            return f'line {i + 1}: {a!r} vs {b!r}'
    return f'{len(ql)} vs {len(dl)} lines' + (
        f'; extra {(ql + dl)[min(len(ql), len(dl))]!r}')


# vmdk's CID (and an overlay's parent CID) is random in both tools.
VOLATILE_INFO = {'actual-size', 'date-sec', 'date-nsec', 'cid', 'parent-cid'}


def strip_volatile(v):
    if isinstance(v, tuple):
        return ('obj', [(k, strip_volatile(x)) for k, x in v[1] if k not in VOLATILE_INFO])
    if isinstance(v, list):
        return [strip_volatile(x) for x in v]
    return v


def image_report(name, d, env):
    """What the next tool sees of a written file: qemu-img's own verdicts."""
    report = {}
    for what, argv in (('info', ['info', '--output=json', '-U', name]),
                       ('check', ['check', '--output=json', '-U', name]),
                       ('map', ['map', '--output=json', '-U', name])):
        rc, out, err = run([QEMU_IMG] + argv, d, VERIFY_TIMEOUT, env)
        tree = json_pairs(out) if out.strip() else None
        report[what] = (rc, strip_volatile(tree) if tree is not None else
                        first_stderr_line(err, d))
    return report


def compare_images(qdir, ddir, before, env):
    diffs = []
    after_q, after_d = snapshot_files(qdir), snapshot_files(ddir)
    names = sorted(n for n in set(after_q) | set(after_d)
                   if before[0].get(n) != after_q.get(n) or before[1].get(n) != after_d.get(n))
    for name in names:
        if name not in after_q or name not in after_d:
            diffs.append(f'{name}: written only by '
                         f'{"qemu-img" if name in after_q else "diskimg"}')
            continue
        # qemu-img's verdict on the same bytes and holes is the same; asking
        # for it can take minutes (map of an empty 1 TiB qcow image: 92 s).
        bytes_equal, holes_equal = same_bytes(os.path.join(qdir, name),
                                              os.path.join(ddir, name))
        if bytes_equal and holes_equal:
            continue
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            rq, rd = pool.map(lambda d: image_report(name, d, env), (qdir, ddir))
        for what in rq:
            if rq[what][0] != rd[what][0]:
                diffs.append(f'{name}: qemu-img {what} exits {rq[what][0]} vs {rd[what][0]}')
                continue
            a, b = rq[what][1], rd[what][1]
            delta = (describe_json_difference(a, b) if not isinstance(a, str)
                     else (None if a == b else f'{a!r} vs {b!r}'))
            if delta:
                diffs.append(f'{name}: {what}: {delta}')
        if rq['info'][0] == 0 and rd['info'][0] == 0 and not bytes_equal:
            delta = (compare_guest_views(name, qdir, ddir, env) if has_data_file(rq['info'][1])
                     else compare_in_place(name, qdir, ddir, env))
            if delta:
                diffs.append(f'{name}: guest view: {delta}')
    return diffs


def has_data_file(info):
    return '"data-file"' in json.dumps(unpair(info))


def compare_in_place(name, qdir, ddir, env):
    """qemu-img compare of the two copies (backing names resolve against
    each image's directory)."""
    rc, out, err = run([QEMU_IMG, 'compare', '-U', name, os.path.join('..', 'd', name)],
                       qdir, VERIFY_TIMEOUT, env)
    if rc == 0:
        return None
    if rc == 2:     # an image did not open: compare what each side reads
        return compare_guest_views(name, qdir, ddir, env)
    return (out + err).strip().splitlines()[0] if (out + err).strip() else f'exit {rc}'


def data_segments(f, size):
    """The file's data extents (SEEK_DATA/SEEK_HOLE), so a sparse 1 TiB raw
    file is compared without reading its holes."""
    segments, pos = [], 0
    while pos < size:
        try:
            start = os.lseek(f.fileno(), pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(f.fileno(), start, os.SEEK_HOLE)
        segments.append((start, end))
        pos = end
    return segments


def merged(segments):
    out = []
    for start, end in sorted(segments):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def same_bytes(a, b):
    """(bytes equal, holes equal): holes read as zeroes, and only where
    either file has data is read, so two sparse 1 TiB files compare in no
    time.  qemu-img map sees holes (a raw data range that is a hole reads as
    zero), so equal bytes alone do not make equal verdicts."""
    try:
        size = os.path.getsize(a)
        if os.path.getsize(b) != size:
            return False, False
        with open(a, 'rb') as fa, open(b, 'rb') as fb:
            sa, sb = data_segments(fa, size), data_segments(fb, size)
            for start, end in merged(sa + sb):
                fa.seek(start)
                fb.seek(start)
                while start < end:
                    n = min(1 << 20, end - start)
                    if fa.read(n) != fb.read(n):
                        return False, False
                    start += n
            return True, sa == sb
    except OSError:
        return False, False


def compare_guest_views(name, qdir, ddir, env):
    """Reads both images as raw through qemu-img, each in its own directory
    (data and backing file names are relative to it), and compares."""
    flat, errors = [], []
    for d in (qdir, ddir):
        out = os.path.join(os.path.dirname(d), os.path.basename(d) + '.guest.raw')
        rc, _, err = run([QEMU_IMG, 'convert', '-U', '-O', 'raw', name, out], d,
                         VERIFY_TIMEOUT, env)
        errors.append(first_stderr_line(err, d) if rc else None)
        flat.append(out)
    if any(errors):
        for f in flat:
            if os.path.exists(f):
                os.unlink(f)
        return None if errors[0] == errors[1] else f'qemu-img convert: {errors[0]!r} vs {errors[1]!r}'
    try:
        with open(flat[0], 'rb') as a, open(flat[1], 'rb') as b:
            offset = 0
            while True:
                ca, cb = a.read(1 << 20), b.read(1 << 20)
                if ca != cb:
                    i = next((i for i, (x, y) in enumerate(zip(ca, cb)) if x != y),
                             min(len(ca), len(cb)))
                    return f'content differs at offset {offset + i}'
                if not ca:
                    return None
                offset += len(ca)
    finally:
        for f in flat:
            os.unlink(f)


class SetupCache:
    """Runs each distinct setup once; cases copy the prepared directory."""
    def __init__(self, workroot, env):
        self.workroot, self.env = workroot, env
        self.lock = threading.Lock()
        self.entries = {}   # setup text -> (lock, [dir or error])

    def get(self, text):
        with self.lock:
            entry = self.entries.setdefault(text, (threading.Lock(), []))
        with entry[0]:
            if not entry[1]:
                d = tempfile.mkdtemp(dir=self.workroot, prefix='setup-')
                error = None
                if text:
                    p = subprocess.run(['sh', '-ec', text], cwd=d, capture_output=True,
                                       text=True, env=self.env, timeout=120)
                    if p.returncode != 0:
                        error = f'setup failed: {p.stderr.strip()[:300]}'
                entry[1].append((d, error))
            return entry[1][0]


def run_case(case, diskimg, workroot, env, setups):
    started = time.monotonic()
    try:
        return run_case_timed(case, diskimg, workroot, env, setups)
    finally:
        case.seconds = time.monotonic() - started


def run_case_timed(case, diskimg, workroot, env, setups):
    base = tempfile.mkdtemp(dir=workroot)
    try:
        setup, error = setups.get(case.setup)
        if error:
            return [('setup', error)]
        qdir, ddir = os.path.join(base, 'q'), os.path.join(base, 'd')
        for d in (qdir, ddir):
            subprocess.run(['cp', '-a', setup, d], check=True)
        before = (snapshot_files(qdir), snapshot_files(ddir))
        timeout = float(case.options.get('timeout', DEFAULT_TIMEOUT))
        rq = run([QEMU_IMG] + case.command, qdir, timeout, env)
        rd = run([diskimg] + case.command, ddir, timeout, env)
        diffs = []
        if rq[0] != rd[0]:
            diffs.append(('exit', f'exit {rq[0]} vs {rd[0]}'))
        delta = compare_stdout(rq[1], rd[1], qdir, ddir)
        if delta:
            diffs.append(('stdout', delta))
        eq, ed = first_stderr_line(rq[2], qdir), first_stderr_line(rd[2], ddir)
        if eq != ed:
            diffs.append(('stderr', f'{eq!r} vs {ed!r}'))
        if rq[0] != 'timeout':
            for delta in compare_images(qdir, ddir, before, env):
                diffs.append(('image', delta))
        return diffs
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--diskimg', default=os.environ.get('DISKIMG', 'diskimg'))
    ap.add_argument('-k', dest='filter', help='run only cases whose line matches this glob')
    ap.add_argument('-v', action='store_true', help='also show known differences')
    ap.add_argument('-j', type=int, default=max(2, 2 * (os.cpu_count() or 1)))
    ap.add_argument('--list', action='store_true', help='print the expanded cases')
    ap.add_argument('--report-unused', action='store_true',
                    help='print, for each known difference, how many cases it excused per aspect')
    ap.add_argument('--check-docs', action='store_true')
    ap.add_argument('--update-docs', action='store_true')
    args = ap.parse_args()
    if os.sep in args.diskimg:
        args.diskimg = os.path.abspath(args.diskimg)

    known = parse_known(KNOWN)
    if args.check_docs or args.update_docs:
        return 0 if docs_in_step(known, args.update_docs) else 1
    if not shutil.which(QEMU_IMG):
        print('SKIP: qemu-img not installed')
        return 77
    formats, read_only = list_formats(args.diskimg)
    cases = parse_cases(CASES, formats, read_only)
    if args.filter:
        cases = [c for c in cases if fnmatch.fnmatchcase(c.text, args.filter)]
    if args.list:
        for c in cases:
            print(c.text)
        return 0

    env = dict(os.environ, LC_ALL='C', TZ='UTC')
    env.pop('DISKIMG_PLUGIN_PATH', None)
    workroot = tempfile.mkdtemp(prefix='diskimg-compat-')
    try:
        with concurrent.futures.ThreadPoolExecutor(args.j) as pool:
            setups = SetupCache(workroot, env)
            results = list(pool.map(lambda c: run_case(c, args.diskimg, workroot, env, setups),
                                    cases))
    finally:
        shutil.rmtree(workroot, ignore_errors=True)

    same = accepted = failed = 0
    for case, diffs in zip(cases, results):
        if not diffs:
            same += 1
            continue
        unexplained = []
        for aspect, detail in diffs:
            hits = [k for k in known if k.covers(case, aspect)]
            for k in hits:
                k.excused[aspect] = k.excused.get(aspect, 0) + 1
            if not hits:
                unexplained.append((aspect, detail))
        if unexplained:
            failed += 1
            print(f'FAIL cases.txt:{case.lineno}: {case.text}')
            for aspect, detail in unexplained:
                print(f'     {aspect}: {detail}')
        else:
            accepted += 1
            if args.v:
                print(f'KNOWN cases.txt:{case.lineno}: {case.text}')
                for aspect, detail in diffs:
                    print(f'     {aspect}: {detail}')
    if args.report_unused:
        report_usage(known)
    # An entry that excuses nothing fails the suite, so the list can only shrink;
    # with -k only part of the cases ran, so silence proves nothing there.
    # Entries for a difference that comes and goes between runs (reason starting
    # with "varies:") are exempt.
    unused = [] if args.filter else [k for k in known
                                     if not k.excused and not k.reason.startswith('varies:')]
    for k in unused:
        print(f'FAIL known-differences.txt:{k.lineno}: excuses no difference any more, '
              f'delete it: {k.pattern}')
    docs_ok = docs_in_step(known, False)
    slowest = sorted(cases, key=lambda c: -c.seconds)[:5]
    print('slowest: ' + ', '.join(f'cases.txt:{c.lineno} [{c.text.rsplit("| ", 1)[-1][:40]}] {c.seconds:.0f}s' for c in slowest))
    print(f'{len(cases)} command lines over formats {",".join(formats)}: {same} identical, '
          f'{accepted} differ only as known-differences.txt allows ({len(known)} entries), '
          f'{failed} differ otherwise')
    return 1 if failed or unused or not docs_ok else 0


if __name__ == '__main__':
    sys.exit(main())
