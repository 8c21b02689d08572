#!/usr/bin/env python3
"""ops/check-module-cycles.py - fails when a module of a crate imports one that imports it back.

Usage: python3 ops/check-module-cycles.py [SRC_DIR ...]   (default: every crate's src/)
"""
# File-level import cycles: each .rs file is a module; `crate::a::b::X` (and `super::x`) resolves
# to the longest module path that exists. Comments and #[cfg(test)] parts are ignored. A child
# using its ancestors (`super::*`) is not an edge: a folder module and its files are one unit.
# Re-exports count: `pub use error::{Result}` in lib.rs makes `crate::Result` an edge to `error`,
# and `pub use crate::x::Y` in a folder's mod.rs makes `crate::folder::Y` an edge to `x`.
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
ALIASES={}  # (module, exported name) -> module that defines it; '' is the crate root
def reexports(src,m):
    """Fill ALIASES from every `pub use` of lib.rs/main.rs and of the folder modules."""
    ALIASES.clear()
    files=[(name,os.path.join(src,name+'.rs')) for name in ('lib','main')]
    files=[('',p) for _,p in files if os.path.exists(p)]+[(k,p) for k,p in m.items() if p.endswith('mod.rs')]
    for mod,p in files:
        text=open(p).read().split('#[cfg(test)]')[0]
        for path in re.findall(r'pub(?:\([a-z]+\))?\s+use\s+([^;]+);',text):
            path=re.sub(r'\s*([{},:])\s*',r'\1',path.strip())  # `a::{B as C, d}`
            base,_,inner=path.partition('{')
            items=inner.rstrip('}').split(',') if inner else [base.rsplit('::',1)[-1]]
            base=base if inner else (base.rsplit('::',1)[0] if '::' in base else '')
            base=base.rstrip(':')
            if base.startswith('crate::'): full_base=base[len('crate::'):]
            elif base=='crate': full_base=''
            else: full_base=((mod+'::') if mod else '')+base
            for item in items:
                item,_,alias=item.strip().partition(' as ')
                name=alias.strip() or item
                if not name or name=='*' or name=='self': continue
                target=resolve_plain((full_base+'::'+item).strip(':'),m)
                if target and target!=mod: ALIASES[(mod,name)]=target
def resolve_plain(path,m):
    parts=path.split('::')
    for k in range(len(parts),0,-1):
        cand='::'.join(parts[:k])
        if cand in m: return cand
    return None
def resolve(path,m):
    parts=path.split('::')
    for k in range(len(parts),-1,-1):
        cand='::'.join(parts[:k])
        if k<len(parts) and (cand,parts[k]) in ALIASES: return ALIASES[(cand,parts[k])]
        if cand in m: return cand
    return None
def graph(src):
    m=mods(src); reexports(src,m); g={}
    for mod,p in m.items():
        text=open(p).read().split('#[cfg(test)]')[0]
        text='\n'.join(l for l in text.split('\n') if not l.strip().startswith('//'))
        deps=set()
        for path in re.findall(r'crate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)',text):
            r=resolve(path,m)
            if r and r!=mod and not mod.startswith(r+'::'): deps.add(r)
        parent=mod.rsplit('::',1)[0] if '::' in mod else ''
        for path in re.findall(r'super::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)',text):
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
def self_test():
    """The checker must see a cycle that only a re-export makes (the one reports/ once had)."""
    import tempfile
    cases={
        'through lib.rs': {'lib.rs':'mod error; mod status;\npub use error::{Other, Result as R};',
                           'error.rs':'pub struct E(crate::status::NoSuch);',
                           'status.rs':'use crate::R;'},
        'through a mod.rs': {'lib.rs':'mod error; mod store;',
                             'store/mod.rs':'mod orders;\npub use orders::Thing;',
                             'store/orders.rs':'pub struct Thing; fn f(_: crate::error::E) {}',
                             'error.rs':'pub struct E(crate::store::Thing);'},
    }
    for name,files in cases.items():
        with tempfile.TemporaryDirectory() as d:
            for f,text in files.items():
                os.makedirs(os.path.dirname(os.path.join(d,f)),exist_ok=True)
                open(os.path.join(d,f),'w').write(text)
            found=cycles(graph(d))
            if not found: sys.exit(f'self-test failed: no cycle found {name}')
    print('self-test: cycles through re-exports are found')
def main():
    if sys.argv[1:]==['--self-test']: return self_test()
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
