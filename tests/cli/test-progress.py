#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test-progress.py DISKIMG SOURCE_ROOT

Progress as docs/progress.md promises it (prints TAP):
  - every command that accepts --progress-fd, run with it on a pipe: each
    line parses, matches docs/introspection/progress.schema.json, the events
    come in order, bytes/percent/elapsed never go back, a successful
    operation ends complete at 100 %, and the result line is last and
    carries the process's exit status and first error;
  - bad descriptors are refused with one line and exit 1; a reader that
    went away does not kill or fail the command;
  - the -p bar is qemu-img 7.2's byte for byte (compared with the real
    qemu-img where its redraw steps are the same as ours, and the first
    and last redraws everywhere), without rate or ETA off a terminal;
  - on a pty (stdout and stderr) the bar shows a rate and an ETA;
  - SIGUSR1 prints one line on stderr.
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import jsonschema
except ImportError:
    jsonschema = None

DISKIMG, SRC = sys.argv[1], sys.argv[2]
QEMU_IMG = shutil.which('qemu-img')
MiB = 1 << 20
n = 0
failed = 0


def ok(cond, desc, detail=''):
    global n, failed
    n += 1
    print(('ok %d - %s' if cond else 'not ok %d - %s') % (n, desc))
    if not cond:
        failed += 1
        for line in str(detail).splitlines()[:30]:
            print('# ' + line)
    sys.stdout.flush()


def skip(desc, why):
    global n
    n += 1
    print('ok %d - %s # SKIP %s' % (n, desc, why))


def write_pattern(path, size, byte, start=0, length=None):
    """A raw file of `size` bytes, `byte` in [start, start+length)."""
    length = size - start if length is None else length
    with open(path, 'wb') as f:
        f.truncate(size)
        f.seek(start)
        f.write(bytes([byte]) * length)


def run(args, **kw):
    return subprocess.run([DISKIMG, *args], capture_output=True, **kw)


def run_with_fd(args, fd=57):
    """Runs diskimg with --progress-fd=fd, the write end of a pipe (a high
    number, clear of the pipe's own); (process, what the pipe carried)."""
    r, w = os.pipe()
    os.dup2(w, fd)
    os.close(w)
    try:
        p = subprocess.Popen([DISKIMG, *args, '--progress-fd=%d' % fd], pass_fds=(fd,),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.close(fd)
    data = b''
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    out, err = p.communicate()
    p.stdout_bytes, p.stderr_bytes = out, err
    return p, data.decode()


# ------------------------------------------------------------ validation

with open(os.path.join(SRC, 'docs', 'introspection', 'progress.schema.json')) as f:
    SCHEMA = json.load(f)
VALIDATOR = None
if jsonschema:
    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    VALIDATOR = cls(SCHEMA)


def problems(text, status, stderr):
    """What is wrong with a --progress-fd output (empty list: nothing)."""
    bad = []
    if not text.endswith('\n'):
        return ['output does not end with a newline: %r' % text[-80:]]
    lines = []
    for i, raw in enumerate(text.splitlines()):
        try:
            lines.append(json.loads(raw))
        except ValueError as e:
            return ['line %d is not JSON (%s): %s' % (i + 1, e, raw)]
    for i, line in enumerate(lines):
        if VALIDATOR:
            bad += ['line %d: %s' % (i + 1, e.message) for e in VALIDATOR.iter_errors(line)]
        else:
            bad += ['line %d lacks %s' % (i + 1, k) for k in SCHEMA['required'] if k not in line]
        if list(line)[:len(SCHEMA['required'])] != SCHEMA['required']:
            bad.append('line %d: members out of order: %s' % (i + 1, list(line)))
    if bad:
        return bad
    events = [l['event'] for l in lines]
    if events.count('result') != 1 or events[-1] != 'result':
        bad.append('not exactly one result line, last: %s' % events)
    result = lines[-1]
    if result['status'] != status:
        bad.append('result status %s, exit status %s' % (result['status'], status))
    first_error = next((l[len('diskimg: '):] for l in stderr.splitlines()
                        if l.startswith('diskimg: ') and 'warning' not in l.lower()), None)
    if result['error'] != first_error:
        bad.append('result error %r, first stderr error %r' % (result['error'], first_error))
    ops = lines[:-1]
    if ops:
        if events[0] != 'start' or events[-2] != 'end' or events.count('start') != 1 or \
                events.count('end') != 1:
            bad.append('events out of order: %s' % events)
        for a, b in zip(ops, ops[1:]):
            for key in ('bytes', 'percent', 'elapsed'):
                if b[key] < a[key]:
                    bad.append('%s went back: %s -> %s' % (key, a, b))
            if b['total'] != a['total'] and b['event'] != 'end':
                bad.append('total changed: %s -> %s' % (a, b))
        end = ops[-1]
        if status == 0 and not (end['completed'] and end['percent'] == 100 and
                                end['bytes'] == end['total']):
            bad.append('success, but the end line is not complete: %s' % end)
        if status != 0 and end['completed']:
            bad.append('exit %d, but the end line says completed' % status)
        if result['percent'] < end['percent'] or result['bytes'] != end['bytes']:
            bad.append('result counts differ from the end line')
    return bad


def check_command(desc, args, status=0, min_progress=0, phases=None):
    p, text = run_with_fd(args)
    bad = [] if p.returncode == status else ['exit %d, expected %d: %s' % (
        p.returncode, status, p.stderr_bytes.decode())]
    bad += problems(text, p.returncode, p.stderr_bytes.decode())
    lines = [json.loads(l) for l in text.splitlines()] if not bad else []
    progress = sum(1 for l in lines if l['event'] == 'progress')
    if lines and progress < min_progress:
        bad.append('only %d progress lines, wanted at least %d' % (progress, min_progress))
    seen = [l['phase'] for l in lines if l['event'] in ('start', 'phase')]
    if lines and phases is not None and seen != phases:
        bad.append('phases %s, expected %s' % (seen, phases))
    ok(not bad, desc, '\n'.join(bad) + '\n' + text)
    return lines


# ------------------------------------------------------------------ setup

tmp = tempfile.mkdtemp(prefix='diskimg-progress-')
os.chdir(tmp)
write_pattern('data.raw', 16 * MiB, 0x5a)
write_pattern('half.raw', 16 * MiB, 0x33, 4 * MiB, 8 * MiB)
write_pattern('one.raw', 1 * MiB, 0x11)
write_pattern('one2.raw', 1 * MiB, 0x11)
for cmd in (['convert', '-f', 'raw', '-O', 'qcow2', 'data.raw', 'data.qcow2'],
            ['convert', '-f', 'raw', '-O', 'qcow2', 'half.raw', 'base.qcow2'],
            ['convert', '-f', 'raw', '-O', 'qcow2', 'data.raw', 'other.qcow2']):
    run(cmd, check=True)


def overlay(name):
    """name over base.qcow2, holding data.raw's bytes where they differ."""
    for f in (name,):
        if os.path.exists(f):
            os.unlink(f)
    run(['convert', '-f', 'raw', '-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2',
         'data.raw', name], check=True)


# --------------------------------------------------- --progress-fd lines

check_command('convert: lines valid, several progress lines under -r, complete',
              ['convert', '-f', 'qcow2', '-O', 'raw', '-r', '8M', 'data.qcow2', 'out.raw'],
              min_progress=3, phases=['copy', 'flush'])
check_command('convert -q --bitmaps: a bitmaps phase, -q does not silence the fd',
              ['convert', '-q', '--bitmaps', '-f', 'qcow2', '-O', 'qcow2', 'data.qcow2',
               'out.qcow2'], phases=['copy', 'bitmaps', 'flush'])
check_command('compare, identical images: exit 0, complete',
              ['compare', '-f', 'qcow2', '-F', 'raw', 'data.qcow2', 'data.raw'],
              phases=['compare'])
lines = check_command('compare, different images: exit 1, not complete, no error',
                      ['compare', 'data.qcow2', 'base.qcow2'], status=1)
ok(lines and lines[-2]['completed'] is False and lines[-2]['percent'] < 100,
   'compare stops early: the end line says where', lines[-2:] if lines else '')
overlay('top.qcow2')
check_command('commit: copy, flush and empty phases, complete',
              ['commit', '-r', '16M', 'top.qcow2'], phases=['copy', 'flush', 'empty'])
overlay('top.qcow2')
check_command('rebase: copy, backing and flush phases, complete',
              ['rebase', '-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2'],
              phases=['copy', 'backing', 'flush'])
check_command('rebase -u: complete although nothing is copied',
              ['rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'])
check_command('amend: complete', ['amend', '-o', 'lazy_refcounts=on', 'data.qcow2'],
              phases=['amend', 'flush'])
check_command('dd: copy and flush phases, complete',
              ['dd', '-f', 'raw', 'if=data.raw', 'of=dd.raw', 'bs=64k'],
              phases=['copy', 'flush'])
check_command('checksum: complete', ['checksum', '-f', 'qcow2', 'data.qcow2'],
              phases=['checksum'])
check_command('bench (read): complete', ['bench', '-f', 'raw', '-c', '3000', 'data.raw'],
              phases=['read'])
check_command('bench -w: write and flush phases, complete',
              ['bench', '-w', '-f', 'raw', '-c', '3000', 'dd.raw'], phases=['write', 'flush'])

lines = check_command('convert of a missing file: only the result line, with the error',
                      ['convert', '-O', 'raw', 'missing.img', 'out2.raw'], status=1)
ok(len(lines) == 1 and lines[0]['event'] == 'result' and lines[0]['error'],
   'the failed open is reported in the result line', lines)
lines = check_command('an argument error after a valid fd still ends with a result',
                      ['compare', 'data.raw'], status=1)

# Every command that declares --progress-fd is among those tested above.
spec = json.loads(run(['schema', 'commands', '--output=json'], check=True).stdout)
declaring = sorted(name for name, c in spec['commands'].items()
                   if any(o.get('long') == 'progress-fd' for o in c.get('options', [])))
ok(declaring == ['amend', 'bench', 'checksum', 'commit', 'compare', 'convert', 'dd', 'rebase'],
   'the commands declaring --progress-fd are the ones tested here', declaring)

# ---------------------------------------------------------- bad descriptors


def refused(desc, fd_text, pass_fds=(), expect=''):
    p = subprocess.run([DISKIMG, 'convert', '-O', 'raw', 'data.raw', 'never.raw',
                        '--progress-fd=' + fd_text], capture_output=True, pass_fds=pass_fds)
    err = p.stderr.decode()
    ok(p.returncode == 1 and err.count('\n') == 1 and expect in err and
       not os.path.exists('never.raw'), desc, 'exit %d: %s' % (p.returncode, err))


refused("--progress-fd=x: not a number, one line, exit 1", 'x', expect="'x' is not a file")
refused('--progress-fd=-1: not a number', '-1', expect='not a file descriptor number')
refused('--progress-fd=3x: not a number', '3x', expect='not a file descriptor number')
refused('--progress-fd=97 (closed): one line, exit 1', '97', expect='97 is not open')
ro = os.open('data.raw', os.O_RDONLY)
os.dup2(ro, 98)
refused('--progress-fd=98 (read-only): one line, exit 1', '98', pass_fds=(98,),
        expect='98 is not open for writing')
os.close(98)
os.close(ro)

# A reader that went away: no SIGPIPE death, the copy still succeeds.
r, w = os.pipe()
os.close(r)
p = subprocess.run([DISKIMG, 'convert', '-O', 'raw', '-f', 'raw', 'data.raw', 'gone.raw',
                    '--progress-fd=%d' % w], capture_output=True, pass_fds=(w,))
os.close(w)
err = p.stderr.decode()
same = run(['compare', '-f', 'raw', '-F', 'raw', 'data.raw', 'gone.raw']).returncode == 0
ok(p.returncode == 0 and same and err.count('warning') == 1,
   'a closed reader: one warning, the convert succeeds', 'exit %d: %s' % (p.returncode, err))

# ------------------------------------------------------------- the -p bar

REDRAW = re.compile(r'^    \((\d{1,3}\.\d\d)/100%\)$')


def bar_problems(out):
    """The bar's format: redraws ending in \\r, from 0.00 to 100.00, one \\n."""
    if not out.endswith(b'\r\n'):
        return ['does not end in \\r\\n: %r' % out[-40:]]
    draws = out[:-2].decode().split('\r')
    bad = ['not a redraw: %r' % d for d in draws if not REDRAW.match(d)]
    if bad:
        return bad
    values = [float(REDRAW.match(d).group(1)) for d in draws]
    if draws[0] != '    (0.00/100%)' or draws[-1] != '    (100.00/100%)':
        bad.append('first %r, last %r' % (draws[0], draws[-1]))
    if values != sorted(values):
        bad.append('not monotonic: %s' % values)
    return bad


def both_tools(args, setup=None):
    """stdout of qemu-img and diskimg for the same command line."""
    outs = []
    for tool in (QEMU_IMG, DISKIMG):
        if setup:
            setup()
        outs.append(subprocess.run([tool, *args], capture_output=True).stdout)
    return outs


out = run(['convert', '-p', '-f', 'raw', '-O', 'raw', 'one.raw', 'p1.raw']).stdout
ok(out == b'    (0.00/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n',
   'convert -p of 1 MiB: qemu-img 7.2\'s 53 bytes', repr(out))
out = run(['convert', '-p', '-f', 'raw', '-O', 'qcow2', 'half.raw', 'p2.qcow2']).stdout
ok(not bar_problems(out), 'convert -p of 16 MiB: redraw format, first and last, monotonic',
   '\n'.join(bar_problems(out)) + '\n' + repr(out))
steps = [float(REDRAW.match(d).group(1)) for d in out[:-2].decode().split('\r')]
ok(all(b > a + 1.0 or b == 100.0 for a, b in zip(steps, steps[1:])),
   'convert -p redraws only after more than 1 % (qemu\'s min_skip), or at 100', steps)
out = run(['compare', '-p', '-f', 'raw', '-F', 'raw', 'one.raw', 'one2.raw']).stdout
ok(out.endswith(b'    (100.00/100%)\rImages are identical.\n\n'),
   'compare -p: the verdict comes before the bar\'s newline', repr(out))
out = run(['convert', '-p', '-O', 'raw', 'missing.img', 'p3.raw']).stdout
ok(b'100.00' not in out, 'a failed convert -p shows no 100 %', repr(out))

if QEMU_IMG:
    cases = [
        ('convert -p of a fully allocated image', ['convert', '-p', '-f', 'raw', '-O', 'raw',
                                                    'one.raw', 'q.raw'], None),
        ('compare -p of identical images', ['compare', '-p', '-f', 'raw', '-F', 'raw',
                                            'one.raw', 'one2.raw'], None),
        ('compare -p of different images', ['compare', '-p', '-f', 'raw', '-F', 'raw',
                                            'data.raw', 'half.raw'], None),
        ('amend -p', ['amend', '-p', '-o', 'lazy_refcounts=off', 'data.qcow2'], None),
        ('rebase -p -u', ['rebase', '-p', '-u', '-b', 'base.qcow2', '-F', 'qcow2',
                          'top.qcow2'], lambda: overlay('top.qcow2')),
    ]
    for desc, args, setup in cases:
        q, d = both_tools(args, setup)
        ok(q == d and q, desc + ': byte for byte qemu-img\'s', 'qemu-img %r\ndiskimg  %r' % (q, d))
    for desc, args in (('convert -p', ['convert', '-p', '-O', 'qcow2', 'half.raw', 'q.qcow2']),
                       ('rebase -p', ['rebase', '-p', '-b', 'other.qcow2', '-F', 'qcow2',
                                      'top.qcow2'])):
        q, d = both_tools(args, (lambda: overlay('top.qcow2')) if 'rebase' in desc else None)
        first = lambda o: o.split(b'\r')[0]
        last = lambda o: o[o.rstrip(b'\r\n').rfind(b'\r') + 1:]
        ok(first(q) == first(d) and last(q) == last(d) and not bar_problems(d),
           desc + ': first and last redraws as qemu-img\'s', 'qemu-img %r\ndiskimg  %r' % (q, d))
else:
    skip('comparisons with qemu-img', 'qemu-img is not installed')

# ------------------------------------------------------ on a terminal: ETA


def on_pty(args, stderr_too=True, seconds=30):
    """Runs diskimg with stdout (and stderr) on a pty; what it printed."""
    master, slave = pty.openpty()
    p = subprocess.Popen([DISKIMG, *args], stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=slave if stderr_too else subprocess.DEVNULL)
    os.close(slave)
    data = b''
    deadline = time.time() + seconds
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:         # EIO: the other side is closed
                break
            if not chunk:
                break
            data += chunk
        elif p.poll() is not None:
            break
    p.wait()
    os.close(master)
    return p.returncode, data


rc, data = on_pty(['convert', '-p', '-f', 'raw', '-O', 'raw', '-r', '8M', 'data.raw', 't.raw'])
text = data.decode(errors='replace')
eta = re.findall(r'\((\d+\.\d\d)/100%\)  ([0-9.]+ [KMG]iB)/s  ETA (\d+):(\d\d):(\d\d)', text)
ok(rc == 0 and len(eta) >= 2, 'on a pty: the bar shows the rate and an ETA', repr(text[-400:]))
if eta:
    secs = [int(h) * 3600 + int(m) * 60 + int(s) for _, _, h, m, s in eta]
    ok(secs[0] <= 3 and secs[-1] == 0 and secs == sorted(secs, reverse=True),
       'the ETA counts down to 0:00:00 (16 MiB at 8 MiB/s)', eta)
rc, data = on_pty(['convert', '-p', '-f', 'raw', '-O', 'raw', '-r', '8M', 'data.raw', 't.raw'],
                  stderr_too=False)
ok(rc == 0 and b'ETA' not in data and not bar_problems(data.replace(b'\r\r\n', b'\r\n')),
   'stdout a terminal but stderr not: qemu-img\'s bytes, no ETA', repr(data[-200:]))

# ------------------------------------------------------------------ SIGUSR1

p = subprocess.Popen([DISKIMG, 'convert', '-f', 'raw', '-O', 'raw', '-r', '8M', 'data.raw',
                      'u.raw'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
time.sleep(1.0)
p.send_signal(signal.SIGUSR1)
out, err = p.communicate()
ok(p.returncode == 0 and out == b'' and re.fullmatch(rb'    \(\d+\.\d\d/100%\)\n', err),
   'SIGUSR1 without -p: one line on stderr, nothing on stdout', 'out %r err %r' % (out, err))

shutil.rmtree(tmp)
print('1..%d' % n)
sys.exit(1 if failed else 0)
