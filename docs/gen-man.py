#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes diskimg's manual pages from the schemas, asked of a built diskimg.

Usage: gen-man.py DISKIMG MANDIR
       gen-man.py DISKIMG --install MANDIR   (meson install script: MANDIR
                                             is relative to the prefix,
                                             DESTDIR is honoured)

Writes MANDIR/man1/diskimg.1 (every command, its options and exit codes,
from schema/commands.yaml) and one MANDIR/man7/diskimg-format-NAME.7 per
format plugin of the build (create, amend and open options with types,
defaults, ranges and allowed values, and the format-specific `info`
fields, from the plugin's own schema).  Each format's page is installed by
that format's package, so the pages on a system describe the formats it
has; a third-party plugin can ship its page the same way.
"""
import json
import os
import subprocess
import sys


def ask(tool, *args):
    # The pages describe the build, not plugins found through the environment.
    env = {k: v for k, v in os.environ.items() if k != 'DISKIMG_PLUGIN_PATH'}
    out = subprocess.run([tool, *args], check=True, capture_output=True, text=True,
                         env=env).stdout
    return json.loads(out)


def roff(text):
    text = str(text).replace('\\', '\\e').replace('-', '\\-')
    return '\\&' + text if text.startswith(('.', "'")) else text


def option_names(opt):
    names = []
    if 'short' in opt:
        names.append('\\fB\\-%s\\fR' % opt['short'])
    if 'long' in opt:
        names.append('\\fB\\-\\-%s\\fR' % roff(opt['long']))
    arg = (' \\fI%s\\fR' % roff(opt['arg'])) if 'arg' in opt else ''
    return ', '.join(names) + arg


def description(spec):
    """A command's `description`: one paragraph or a list of them."""
    text = spec.get('description', [])
    paragraphs = [text] if isinstance(text, str) else text
    return [line for par in paragraphs for line in ('.PP', roff(' '.join(par.split())))]


def command_section(name, spec):
    lines = ['.SS %s' % roff(name), roff(spec.get('summary', '')) + '.', '.PP',
             '\\fBdiskimg %s\\fR' % roff(spec.get('synopsis', name))]
    lines += description(spec) + ['.RS']
    for opt in spec.get('options', []):
        lines += ['.TP', option_names(opt), roff(opt.get('help', ''))]
    lines.append('.RE')
    codes = spec.get('exit-codes', {})
    if codes:
        lines += ['.PP', 'Exit status:', '.RS']
        for code, meaning in codes.items():
            lines += ['.TP', '\\fB%s\\fR' % code, roff(meaning)]
        lines.append('.RE')
    return lines


def human_size(value):
    """Sizes the way qemu-img's help writes them: 65536 is 64k."""
    if not isinstance(value, int) or isinstance(value, bool):
        return str(value)
    for suffix, shift in (('E', 60), ('P', 50), ('T', 40), ('G', 30), ('M', 20), ('k', 10)):
        if value and value % (1 << shift) == 0:
            return '%d%s' % (value >> shift, suffix)
    return str(value)


def option_text(opt):
    extra = []
    size = human_size if opt.get('type') == 'size' else str
    if 'values' in opt:
        extra.append('one of ' + ', '.join(map(str, opt['values'])))
    for key, word in (('min', 'at least'), ('max', 'at most')):
        if key in opt:
            extra.append('%s %s' % (word, size(opt[key])))
    if opt.get('power-of-two'):
        extra.append('a power of two')
    if 'default' in opt and str(opt['default']) != '':
        default = opt['default']
        if isinstance(default, bool):
            default = 'on' if default else 'off'
        extra.append('default %s' % size(default))
    if opt.get('deprecated'):
        extra.append('deprecated')
    help_text = opt.get('help', '')
    return help_text + (' (%s)' % '; '.join(extra) if extra else '')


def flatten(opts, prefix=''):
    """Struct members become dotted options, as on the command line."""
    for opt in opts:
        name = prefix + opt['name']
        if opt.get('type') == 'struct':
            yield from flatten(opt.get('members', []), name + '.')
        else:
            yield dict(opt, name=name)


# (schema option set, section title, how the options are given: %s = format)
OPTION_SETS = (
    ('create-options', 'CREATE OPTIONS',
     'Given with \\fB\\-o\\fR to \\fBdiskimg create\\fR, \\fBconvert\\fR and '
     '\\fBmeasure\\fR; \\fBdiskimg create \\-f %s \\-o help\\fR lists them too.'),
    ('amend-options', 'AMEND OPTIONS',
     'Given with \\fB\\-o\\fR to \\fBdiskimg amend\\fR.'),
    ('open-options', 'OPEN OPTIONS',
     'Given with \\fB\\-\\-image\\-opts\\fR, as in '
     '\\fBdriver=%s,file.filename=FILE,KEY=VALUE\\fR.'),
)


def option_list(opts):
    lines = []
    for opt in flatten(opts):
        lines += ['.TP', '\\fB%s\\fR=\\fI%s\\fR' % (roff(opt['name']), roff(opt['type'])),
                  roff(option_text(opt))]
    return lines


def field_type(field):
    if field.get('type') == 'list':
        return 'list of ' + field.get('element', {}).get('type', 'any')
    return field.get('type', 'any')


def field_list(fields, prefix=''):
    """The members of an info object; members of a struct appear dotted."""
    lines = []
    for field in fields:
        name = prefix + field['name']
        notes = []
        if 'values' in field:
            notes.append('one of ' + ', '.join(map(str, field['values'])))
        if field.get('optional'):
            notes.append('optional')
        text = field.get('help', '') + (' (%s)' % '; '.join(notes) if notes else '')
        lines += ['.TP', '\\fB%s\\fR (\\fI%s\\fR)' % (roff(name), roff(field_type(field))),
                  roff(text)]
        if field.get('type') == 'struct':
            lines += field_list(field.get('members', []), name + '.')
    return lines


def format_page(tool, fmt):
    name = fmt['name']
    schema = ask(tool, 'schema', name, '--output=json')
    summary = roff(schema.get('summary', fmt.get('summary', '')))
    page = ['.TH DISKIMG\\-FORMAT\\-%s 7 "" "diskimg" "diskimg formats"' % roff(name.upper()),
            '.SH NAME', 'diskimg\\-format\\-%s \\- %s' % (roff(name), summary),
            '.SH DESCRIPTION',
            'The \\fB%s\\fR format plugin of \\fBdiskimg\\fR(1), selected with '
            '\\fB\\-f %s\\fR (\\fB\\-O %s\\fR for a target) and installed by the '
            'package \\fBdiskimg\\-format\\-%s\\fR.' % ((roff(name),) * 4)]
    if schema.get('flags', {}).get('probe-fallback'):
        page += ['.PP', 'When no other format recognises a file, diskimg opens it '
                 'in this format.']
    options = schema.get('options', {})
    for set_name, title, intro in OPTION_SETS:
        if options.get(set_name):
            page += ['.SH ' + title, intro.replace('%s', roff(name))]
            page += option_list(options[set_name])
    if schema.get('info'):
        page += ['.SH INFO FIELDS',
                 'The format\\-specific part of \\fBdiskimg info\\fR; with '
                 '\\fB\\-\\-output=json\\fR it is \\fB"format\\-specific": '
                 '{"type": "%s", "data": {...}}\\fR.' % roff(name)]
        page += field_list(schema['info'])
    for type_name, fields in schema.get('types', {}).items():
        if type_name == next(iter(schema['types'])):
            page.append('.SH TYPES')
        page += ['.SS ' + roff(type_name)] + field_list(fields)
    page += ['.SH SEE ALSO',
             '\\fBdiskimg\\fR(1); \\fBdiskimg schema %s \\-\\-output=json\\fR prints '
             'the schema this page was made from.' % roff(name)]
    return page


def formats_section(formats):
    lines = ['.SH FORMATS',
             'Each format plugin has its own page, installed with its package; '
             '\\fBdiskimg \\-\\-list\\-formats\\fR shows the installed ones.']
    for fmt in formats:
        lines += ['.TP', '\\fB%s\\fR' % roff(fmt['name']),
                  '%s; see \\fBdiskimg\\-format\\-%s\\fR(7).' % (
                      roff(fmt.get('summary', '')), roff(fmt['name']))]
    return lines


PROGRESS_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'introspection',
                               'progress.schema.json')


def progress_section():
    """--progress-fd's line format, from its JSON Schema (docs/progress.md)."""
    with open(PROGRESS_SCHEMA, encoding='utf-8') as f:
        members = json.load(f)['properties']
    lines = ['.SH PROGRESS',
             'With \\fB\\-\\-progress\\-fd=\\fR\\fIN\\fR, convert, compare, commit, '
             'rebase, amend, dd and bench write one JSON object per line to file '
             'descriptor \\fIN\\fR; the last line is the result. An \\fIN\\fR that is '
             'not a number, not open or not open for writing is refused with exit '
             'status 1. The members, in this order:']
    for name, member in members.items():
        lines += ['.TP', '\\fB%s\\fR' % roff(name), roff(member.get('description', ''))]
    lines += ['.PP',
              'With \\fB\\-p\\fR the bar is qemu\\-img\'s, byte for byte '
              '("    (45.00/100%)" and a carriage return); only when standard output '
              'and standard error are both terminals does it also show the rate and '
              'the time left.']
    return lines


def command_page(commands, formats):
    page = ['.TH DISKIMG 1 "" "diskimg" "User Commands"',
            '.SH NAME', 'diskimg \\- create, inspect, convert and check disk images',
            '.SH SYNOPSIS', '\\fBdiskimg\\fR [\\fB\\-\\-io=\\fR\\fIBACKEND\\fR] '
            '\\fICOMMAND\\fR [\\fIoptions\\fR]',
            '.SH DESCRIPTION',
            'diskimg is command\\-line compatible with qemu\\-img: the same commands, '
            'options, exit codes and JSON output. Image formats, I/O backends and '
            'crypto providers are plugins; \\fBdiskimg \\-\\-list\\-formats\\fR and '
            '\\fBdiskimg schema\\fR describe what is installed.',
            '.SH COMMANDS']
    for name, spec in commands.items():
        page += command_section(name, spec)
    page += progress_section()
    page += formats_section(formats)
    page += ['.SH ENVIRONMENT', '.TP', '\\fBDISKIMG_PLUGIN_PATH\\fR',
             'Colon\\-separated directories searched for plugins before the system '
             'plugin directory.',
             '.SH SEE ALSO', ', '.join(['\\fBqemu\\-img\\fR(1)'] + [
                 '\\fBdiskimg\\-format\\-%s\\fR(7)' % roff(f['name']) for f in formats])]
    return page


def write_page(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


def main():
    if len(sys.argv) == 4 and sys.argv[2] == '--install':
        tool = sys.argv[1]
        mandir = os.path.join(os.environ['MESON_INSTALL_DESTDIR_PREFIX'], sys.argv[3])
    elif len(sys.argv) == 3:
        tool, mandir = sys.argv[1:]
    else:
        sys.exit(__doc__.strip().splitlines()[2])
    commands = ask(tool, 'schema', 'commands', '--output=json')['commands']
    formats = ask(tool, '--list-formats', '--output=json')['plugins']
    write_page(os.path.join(mandir, 'man1', 'diskimg.1'), command_page(commands, formats))
    for fmt in formats:
        write_page(os.path.join(mandir, 'man7', 'diskimg-format-%s.7' % fmt['name']),
                   format_page(tool, fmt))


if __name__ == '__main__':
    main()
