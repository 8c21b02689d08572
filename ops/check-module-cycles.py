#!/usr/bin/env python3
"""ops/check-module-cycles.py - fails when a module of a crate imports one that imports it back.

Usage: python3 ops/check-module-cycles.py [SRC_DIR ...]   (default: every crate's src/)
"""
# File-level import cycles: each .rs file is a module; `crate::a::b::X` (and `super::x`) resolves
# to the longest module path that exists. Comments and #[cfg(test)] parts are ignored. A child
# using its ancestors (`super::*`) is not an edge: a folder module and its files are one unit.
import re,os,sys
def mods(src):
    m={}
    for root,_,files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            p=os.path.join(root,f); rel=os.path.relpath(p,src)[:-3]
            if rel in('lib','main'): continue
            if rel.endswith('/mod'): rel=rel[:-4]
            m[rel.replace('/','::')]=p
    return m
def resolve(path,m):
    parts=path.split('::')
    for k in range(len(parts),0,-1):
        cand='::'.join(parts[:k])
        if cand in m: return cand
    return None
def graph(src):
    m=mods(src); g={}
    for mod,p in m.items():
        text=open(p).read().split('#[cfg(test)]')[0]
        text='\n'.join(l for l in text.split('\n') if not l.strip().startswith('//'))
        deps=set()
        for path in re.findall(r'crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)',text):
            r=resolve(path,m)
            if r and r!=mod and not mod.startswith(r+'::'): deps.add(r)
        parent=mod.rsplit('::',1)[0] if '::' in mod else ''
        for path in re.findall(r'super::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)',text):
            full=(parent+'::'+path) if parent else path
            r=resolve(full,m)
            if r and r!=mod and not mod.startswith(r+'::'): deps.add(r)
        # use crate::a::{b, c}
        for base,inner in re.findall(r'crate::([a-z_:]*)\{([^}]*)\}',text):
            for item in inner.split(','):
                item=item.strip().split(' ')[0]
                r=resolve((base+item).strip(':'),m)
                if r and r!=mod and not mod.startswith(r+'::'): deps.add(r)
        g[mod]=deps
    return g
def cycles(g):
    out=set()
    def dfs(n,stack):
        for d in g.get(n,()):
            if d in stack: out.add(' -> '.join(stack[stack.index(d):]+[d]))
            elif len(stack)<12: dfs(d,stack+[d])
    for n in g: dfs(n,[n])
    return out
def main():
    dirs=sys.argv[1:] or ['shared/src','reports/src','producer/src','consumer/src','tests/src']
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)),'..')) if not sys.argv[1:] else None
    bad=0
    for src in dirs:
        g=graph(src); c=sorted(cycles(g))
        print(f'{src}: {len(g)} modules, {len(c)} import cycles')
        for line in c[:20]: print('  cycle:',line)
        bad+=len(c)
    sys.exit(1 if bad else 0)
main()
