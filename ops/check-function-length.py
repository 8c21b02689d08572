#!/usr/bin/env python3
"""ops/check-function-length.py - fails on a production function over 80 lines without a reason.

Usage: python3 ops/check-function-length.py [--self-test] [SRC_DIR ...]   (default: every crate's src/)

ARCHITECTURE.md's size rule: no function over 80 lines unless a `// Long on purpose: ...`
comment right above it (between its doc comment and its `fn` line) says why. Code after a
file's first `#[cfg(test)]` is test code and not counted. Relies on rustfmt's layout: a
function ends at the first `}` alone on a line at the indentation of its `fn`.
"""
import os, re, sys

LIMIT = 80
FN = re.compile(r'^(\s*)(?:pub(?:\([a-z:]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)')
REASON = '// Long on purpose:'

def long_functions(text):
    """(line, name, length) of every function over LIMIT lines without its reason."""
    lines = text.split('\n')
    end = next((i for i, l in enumerate(lines) if l.startswith('#[cfg(test)]')), len(lines))
    out, i = [], 0
    while i < end:
        m = FN.match(lines[i])
        if not m or lines[i].rstrip().endswith(';'):
            i += 1
            continue
        indent, close = m.group(1), m.group(1) + '}'
        j = i
        while j < end and lines[j].rstrip() != close:
            j += 1
        length = j - i + 1
        above = []
        k = i - 1
        while k >= 0 and lines[k].strip().startswith(('//', '#[')):
            above.append(lines[k].strip())
            k -= 1
        if length > LIMIT and not any(a.startswith(REASON) for a in above):
            out.append((i + 1, m.group(2), length))
        i = j + 1
    return out

def self_test():
    body = '\n'.join('    let _x = 1;' for _ in range(LIMIT))
    bare = f'/// Does it.\nfn big() {{\n{body}\n}}\n'
    reasoned = f'/// Does it.\n// Long on purpose: one step per rule.\nfn big() {{\n{body}\n}}\n'
    short = 'fn small() {\n    let _x = 1;\n}\n'
    test_only = f'#[cfg(test)]\nmod tests {{\n{bare}}}\n'
    assert long_functions(bare) == [(2, 'big', LIMIT + 2)], long_functions(bare)
    assert long_functions(reasoned) == []
    assert long_functions(short) == []
    assert long_functions(test_only) == []
    print('self-test: long functions without a reason are found')

def main():
    if sys.argv[1:] == ['--self-test']:
        return self_test()
    dirs = sys.argv[1:]
    if not dirs:
        os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
        dirs = ['shared/src', 'reports/src', 'producer/src', 'consumer/src']
    bad = 0
    for src in dirs:
        for root, _, files in sorted(os.walk(src)):
            for f in sorted(files):
                if not f.endswith('.rs') or f.endswith('_tests.rs'):
                    continue
                p = os.path.join(root, f)
                for line, name, length in long_functions(open(p).read()):
                    print(f'{p}:{line}: fn {name} is {length} lines (over {LIMIT}) '
                          f'without a "{REASON}" comment above it')
                    bad += 1
    print(f'{bad} function(s) over {LIMIT} lines without a reason')
    sys.exit(1 if bad else 0)

main()
