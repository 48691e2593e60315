#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns a YAML schema into a C source defining `const char SYMBOL[]`.

Usage: diskimg-embed-schema INPUT.yaml OUTPUT.c SYMBOL

Plugins embed their schema so that one .so file is the whole plugin; the
core reads it from the descriptor's `schema` field.
"""
import sys


def c_string_lines(text):
    for line in text.splitlines(keepends=True):
        escaped = (line.replace('\\', '\\\\').replace('"', '\\"')
                   .replace('\n', '\\n').replace('\t', '\\t'))
        yield '    "%s"\n' % escaped


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2])
    src, dst, symbol = sys.argv[1:]
    with open(src, encoding='utf-8') as f:
        text = f.read()
    with open(dst, 'w', encoding='utf-8') as out:
        out.write('/* generated from %s by diskimg-embed-schema; do not edit */\n' % src.split('/')[-1])
        out.write('const char %s[] =\n' % symbol)
        out.writelines(c_string_lines(text) if text else ['    ""\n'])
        out.write('    ;\n')


if __name__ == '__main__':
    main()
