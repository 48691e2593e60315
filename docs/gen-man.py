#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the diskimg(1) man page from the schemas, asked of a built diskimg.

Usage: gen-man.py DISKIMG OUTPUT
       gen-man.py DISKIMG --install MANPATH   (meson install script: MANPATH
                                              is relative to the prefix,
                                              DESTDIR is honoured)

The commands, their options and exit codes come from schema/commands.yaml;
the FORMATS section from each installed format plugin's schema, so the page
always describes exactly what this build does.
"""
import json
import os
import subprocess
import sys


def ask(tool, *args):
    out = subprocess.run([tool, *args], check=True, capture_output=True, text=True).stdout
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


def command_section(name, spec):
    lines = ['.SS %s' % roff(name), roff(spec.get('summary', '')) + '.', '.PP',
             '\\fBdiskimg %s\\fR' % roff(spec.get('synopsis', name)), '.RS']
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


def option_text(opt):
    extra = []
    if 'values' in opt:
        extra.append('one of ' + ', '.join(map(str, opt['values'])))
    for key, word in (('min', 'at least'), ('max', 'at most')):
        if key in opt:
            extra.append('%s %s' % (word, opt[key]))
    if 'default' in opt and str(opt['default']) != '':
        default = opt['default']
        if isinstance(default, bool):
            default = 'on' if default else 'off'
        extra.append('default %s' % default)
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


def format_section(tool, fmt):
    schema = ask(tool, 'schema', fmt['name'], '--output=json')
    lines = ['.SS %s' % roff(fmt['name']), roff(fmt.get('summary', '')) + '.']
    for set_name, title in (('create-options', 'Create options (-o)'),
                            ('open-options', 'Open options (--image-opts)')):
        opts = schema.get('options', {}).get(set_name, [])
        if not opts:
            continue
        lines += ['.PP', title + ':', '.RS']
        for opt in flatten(opts):
            lines += ['.TP', '\\fB%s\\fR=\\fI%s\\fR' % (roff(opt['name']), roff(opt['type'])),
                      roff(option_text(opt))]
        lines.append('.RE')
    return lines


def main():
    if len(sys.argv) == 4 and sys.argv[2] == '--install':
        tool, rel = sys.argv[1], sys.argv[3]
        prefix = os.environ['MESON_INSTALL_DESTDIR_PREFIX']
        output = os.path.join(prefix, rel)
        os.makedirs(os.path.dirname(output), exist_ok=True)
    elif len(sys.argv) == 3:
        tool, output = sys.argv[1:]
    else:
        sys.exit(__doc__.strip().splitlines()[2])
    commands = ask(tool, 'schema', 'commands', '--output=json')['commands']
    formats = ask(tool, '--list-formats', '--output=json')
    page = ['.TH DISKIMG 1 "" "diskimg" "User Commands"',
            '.SH NAME', 'diskimg \\- create, inspect, convert and check disk images',
            '.SH SYNOPSIS', '\\fBdiskimg\\fR [\\fB\\-\\-io=\\fR\\fIBACKEND\\fR] '
            '\\fICOMMAND\\fR [\\fIoptions\\fR]',
            '.SH DESCRIPTION',
            'diskimg is command-line compatible with qemu\\-img: the same commands, '
            'options, exit codes and JSON output. Image formats, I/O backends and '
            'crypto providers are plugins; \\fBdiskimg \\-\\-list\\-formats\\fR and '
            '\\fBdiskimg schema\\fR describe what is installed.',
            '.SH COMMANDS']
    for name, spec in commands.items():
        page += command_section(name, spec)
    page.append('.SH FORMATS')
    for fmt in formats:
        page += format_section(tool, fmt)
    page += ['.SH ENVIRONMENT', '.TP', '\\fBDISKIMG_PLUGIN_PATH\\fR',
             'Colon-separated directories searched for plugins before the system '
             'plugin directory.',
             '.SH SEE ALSO', '\\fBqemu\\-img\\fR(1)']
    with open(output, 'w', encoding='utf-8') as f:
        f.write('\n'.join(page) + '\n')


if __name__ == '__main__':
    main()
