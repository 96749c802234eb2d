#!/usr/bin/env python3
"""Function lengths in the workspace's Rust sources, as STYLE.md counts them:
lines from a `fn` item's signature to its closing brace. Prints the median,
the share under 70 lines and the longest, per crate and overall.
Usage: scripts/fn-lengths.py [--top N] [--all]  (--all includes tests/ and #[cfg(test)] code)."""
import re, statistics, sys
from pathlib import Path

FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+(\w+)')


def strip(line):
    """The line without string/char literals and comments, for brace counting."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split('//', 1)[0]


def functions(path, include_tests):
    lines = path.read_text().splitlines()
    i, out = 0, []
    while i < len(lines):
        if not include_tests and re.match(r'^\s*#\[cfg\(test\)\]', lines[i]):
            break  # test modules close the file by convention
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, j, opened = 0, i, False
        while j < len(lines):
            text = strip(lines[j])
            if not opened and ';' in text and '{' not in text:
                break  # a declaration without a body
            depth += text.count('{') - text.count('}')
            opened = opened or '{' in text
            if opened and depth <= 0:
                out.append((j - i + 1, f'{path}:{i + 1} {m.group(7)}'))
                break
            j += 1
        i += 1
    return out


def main():
    include_tests = '--all' in sys.argv
    top = int(sys.argv[sys.argv.index('--top') + 1]) if '--top' in sys.argv else 5
    by_crate = {}
    for path in sorted(Path('crates').glob('*/src/**/*.rs')):
        by_crate.setdefault(path.parts[1], []).extend(functions(path, include_tests))
    every = [f for fs in by_crate.values() for f in fs]
    print(f"{'crate':<14} {'fns':>5} {'median':>6} {'<70':>7} longest")
    for crate, fs in sorted(by_crate.items()) + [('ALL', every)]:
        sizes = [n for n, _ in fs]
        if not sizes:
            continue
        longest = max(fs)
        under = sum(n < 70 for n in sizes) / len(sizes)
        print(f"{crate:<14} {len(sizes):>5} {statistics.median(sizes):>6} {under:>7.1%} {longest[0]} {longest[1]}")
    print(f"\nlongest {top}:")
    for n, where in sorted(every, reverse=True)[:top]:
        print(f"{n:>5} {where}")


if __name__ == '__main__':
    main()
