#!/usr/bin/env python3
"""The docs/HF_PARITY.md results table from compare.py --json-out FILE. usage: summarize.py FILE"""
import json, re, sys, collections
d = json.load(open(sys.argv[1]))
rows = d['rows']
g = collections.OrderedDict()
for r in rows:
    if r['model'].startswith('tokenizer'): continue
    g.setdefault((r['model'], r['dtype']), []).append(r)
print('| model | weights | NLL, moe4j f32 (max rel. diff, 7 texts) | NLL, moe4j bf16 (max / mean error vs fp32 ref, as a fraction of 2x HF bf16\'s; near-tie tokens) | greedy ids (equal / near-tie divergence) | CLI text | result |')
print('|---|---|---|---|---|---|---|')
for (m, dt), rs in g.items():
    f32 = [r for r in rs if r['check'] == 'score nll (moe4j f32)']
    rel = max(float(re.search(r'max rel ([0-9.e+-]+)', r['detail']).group(1)) for r in f32)
    b = [r for r in rs if r['check'] == 'score nll (moe4j bf16)']
    if b:
        fr = []
        for r in b:
            x = re.search(r'max\|moe4j-ref\| ([0-9.e+-]+) vs 2x ([0-9.e+-]+), mean ([0-9.e+-]+) vs 2x ([0-9.e+-]+).* (\d+) tokens, (\d+) near-tie', r['detail'])
            fr.append((float(x.group(1))/float(x.group(2)), float(x.group(3))/float(x.group(4)), int(x.group(5)), int(x.group(6))))
        bs = f"{max(f[0] for f in fr):.2f} / {max(f[1] for f in fr):.2f}; {sum(f[3] for f in fr)} of {sum(f[2] for f in fr)}"
    else:
        bs = '-'
    gi = [r for r in rs if r['check'] == 'generate ids']
    eq = sum('equal' in r['detail'] for r in gi)
    gt = [r for r in rs if r['check'] == 'generate text (CLI)']
    ok = all(r['ok'] for r in rs)
    print(f"| {m} | {dt} | {rel:.1e} | {bs} | {eq} / {len(gi)-eq} of {len(gi)} | {sum(r['ok'] for r in gt)}/{len(gt)} | {'PASS' if ok else 'FAIL'} ({sum(r['ok'] for r in rs)}/{len(rs)}) |")
t = [r for r in rows if r['model'].startswith('tokenizer')]
c = collections.Counter((r['check'], r['ok']) for r in t)
print()
for k in sorted(set(r['check'] for r in t)):
    print(f"- {k}: {c[(k, True)]}/{c[(k, True)] + c[(k, False)]} equal")
