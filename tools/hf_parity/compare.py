#!/usr/bin/env python3
"""moe4j vs Hugging Face transformers on the same checkpoints (made by make_models.py).

Checks, per model directory NAME-f32 / NAME-bf16 under --models:
  score     per-token NLL: `moe4j score --json` vs HF model(ids).logits (log_softmax in fp64) on the
            ids moe4j reports (which must equal HF tokenizer(text).input_ids).
            f32 weights, moe4j --dtype f32: max |dNLL| / max(|NLL_hf|, 1) <= --f32-rtol.
            bf16 weights, moe4j --dtype bf16: FlashAttention-style rule against the fp32 reference
              (HF run in fp32 on the same bf16 weights): max|moe4j - ref| <= 2 * max|HF_bf16 - ref|
              and mean|moe4j - ref| <= 2 * mean|HF_bf16 - ref|. Top-k routing is discontinuous: a
              token whose k-th and (k+1)-th router probabilities (fp32 reference, any MoE layer) are
              closer than 2x HF's own mean bf16 router-probability error in that layer may pick another
              expert under any bf16 rounding, so such near-tie tokens are left out of the max (and
              counted in the table); the mean covers every token.
            bf16 weights, moe4j --dtype f32: the exact upcast, so the f32 tolerance vs the reference.
  generate  greedy, 16 new tokens: HF generate(do_sample=False) vs `moe4j generate --temperature 0`
            (text) and vs moe4j's token ids (Moe4jProbe.java, same TextGenerator as the CLI).
            bf16: a divergence is accepted only at a near-tie: the fp32 reference's logit margin
            between the two tokens at that position is <= 2 * max|HF_bf16 - ref| logits there.
  tokenize  HF AutoTokenizer vs `moe4j tokenize --json` (with and without --specials) on ASCII,
            UTF-8 and emoji text; decode of the ids (with and without specials) vs Moe4jProbe; on
            moe4j's tokenizer files and on the same tokenizer re-saved by transformers.

Prints a table, writes --json-out, exits 1 on any mismatch.
usage: compare.py [--models DIR] [--moe4j CMD] [--classpath CP] [--json-out FILE]
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))

SCORE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "add:123+45=168\ncopy:abc=abc\n",
    "def f(x):\n\treturn x * 2  # doubles\n",
    "naïve café, Übergröße, smørrebrød, façade",
    "日本語のテキストと中文文本",
    "emoji 🙂👍🏽 and a family 👨‍👩‍👧 🇯🇵",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco.",
]
GEN_PROMPTS = ["Hello", "The quick brown fox", "add:12+7=", "über 🙂"]
TOKENIZE_TEXTS = [
    "Hello, world!",
    "  leading and trailing spaces  ",
    "line1\nline2\r\n\ttab",
    "naïve café — Übergröße",
    "日本語 中文 한국어",
    "🙂👍🏽👨‍👩‍👧🇯🇵",
    "literal <|bos|> and <|endoftext|> text",
]
MAX_NEW = 16


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(shlex.quote, cmd))} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p.stdout


def last_json(out):
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in output:\n{out[-2000:]}")


class Moe4j:
    def __init__(self, launcher, classpath):
        self.launcher = shlex.split(launcher)
        self.probe_dir = tempfile.mkdtemp(prefix="moe4j-probe-")
        self.cp = self.probe_dir + os.pathsep + classpath
        run(["javac", "-nowarn", "-cp", classpath, "-d", self.probe_dir, os.path.join(HERE, "Moe4jProbe.java")])

    def score(self, d, text, dtype):
        return last_json(run(self.launcher + ["score", "--model", d, "--text", text, "--json", "--device", "cpu",
                                              "--dtype", dtype]))

    def generate_text(self, d, prompt, dtype):
        out = subprocess.run(self.launcher + ["generate", "--model", d, "--prompt", prompt, "--temperature", "0",
                                              "--max-new-tokens", str(MAX_NEW), "--device", "cpu", "--dtype", dtype],
                             capture_output=True)
        if out.returncode != 0:
            raise RuntimeError(f"moe4j generate exited {out.returncode}: {out.stderr.decode()[-2000:]}")
        text = out.stdout.decode("utf-8")
        return text[:-1] if text.endswith("\n") else text

    def greedy_ids(self, d, prompt, dtype):
        return last_json(run(["java", "-cp", self.cp, "Moe4jProbe", "greedy", d, dtype, str(MAX_NEW), prompt]))

    def tokenize(self, d, text, specials):
        return last_json(run(self.launcher + ["tokenize", "--model", d, "--text", text, "--json"]
                             + (["--specials"] if specials else [])))

    def decode(self, d, ids):
        return last_json(run(["java", "-cp", self.cp, "Moe4jProbe", "decode", d] + [str(i) for i in ids]))


@torch.no_grad()
def hf_nll(model, ids):
    logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits[:-1], dim=-1)
    return (-lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]).tolist()


@torch.no_grad()
def router_probs(model, ids):
    """Softmax of each MoE layer's router logits, [T, E] per layer, computed as the model does."""
    probs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: probs.append(torch.softmax(
                 torch.nn.functional.linear(i[0].reshape(-1, i[0].shape[-1]), mod.weight).float(), -1)))
             for n, m in model.named_modules() if n.endswith(("mlp.gate", "block_sparse_moe.gate"))]
    try:
        model(torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    return probs


def near_tie_positions(ref, hf_bf16, ids):
    """Positions whose top-k choice in some layer is within HF's own bf16 routing error of a tie."""
    k = ref.config.num_experts_per_tok
    ties = set()
    for pr, pb in zip(router_probs(ref, ids), router_probs(hf_bf16, ids)):
        # the typical (mean over tokens) size of HF's own bf16 error, not its worst case: the worst
        # case sits after HF's own routing flips and would excuse almost every token
        tau = 2 * (pr - pb).abs().amax(-1).mean().item()
        top = pr.sort(-1, descending=True).values
        ties.update(torch.nonzero(top[:, k - 1] - top[:, k] < tau).flatten().tolist())
    return ties


@torch.no_grad()
def hf_logits(model, ids):
    return model(torch.tensor([ids])).logits[0, -1].double()


@torch.no_grad()
def hf_greedy(model, prompt_ids, eos):
    out = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                         do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=eos,
                         temperature=None, top_p=None, top_k=None)
    new = out[0, len(prompt_ids):].tolist()
    if eos in new:  # moe4j does not emit eos; compare up to it
        new = new[:new.index(eos)]
    return new


class Report:
    def __init__(self):
        self.rows = []
        self.failures = []

    def add(self, model, dtype, check, case, ok, detail):
        self.rows.append(dict(model=model, dtype=dtype, check=check, case=case, ok=bool(ok), detail=detail))
        if not ok:
            self.failures.append(self.rows[-1])

    def print(self):
        print(f"{'model':<20} {'weights':<7} {'check':<22} {'case':<34} {'result':<6} detail")
        for r in self.rows:
            case = r["case"].encode("unicode_escape").decode()[:34]
            print(f"{r['model']:<20} {r['dtype']:<7} {r['check']:<22} {case:<34} {'PASS' if r['ok'] else 'FAIL':<6} "
                  f"{r['detail']}")


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check_score(rep, m4, name, wdtype, d, ref, hf_bf16, tok, rtol):
    for text in SCORE_TEXTS:
        ids = tok(text).input_ids
        nll_ref = hf_nll(ref, ids)
        runs = [("f32", None)] if wdtype == "f32" else [("f32", None), ("bf16", hf_nll(hf_bf16, ids))]
        for mdtype, nll_hfb in runs:
            got = m4.score(d, text, mdtype)
            if got["tokens"] != ids:
                i = first_diff(got["tokens"], ids)
                rep.add(name, wdtype, f"score ids (moe4j {mdtype})", text, False,
                        f"moe4j ids differ from HF tokenizer at {i}: {got['tokens'][i:i+3]} vs {ids[i:i+3]}")
                continue
            diffs = [abs(a - b) for a, b in zip(got["nll"], nll_ref)]
            worst = max(range(len(diffs)), key=diffs.__getitem__)
            if nll_hfb is None:
                rel = max(dv / max(abs(r), 1.0) for dv, r in zip(diffs, nll_ref))
                rep.add(name, wdtype, f"score nll (moe4j {mdtype})", text, rel <= rtol,
                        f"max rel {rel:.2e} (tol {rtol:.0e}), max abs {diffs[worst]:.2e} at token {worst + 1}, "
                        f"{len(diffs)} tokens")
            else:
                hf_diffs = [abs(a - b) for a, b in zip(nll_hfb, nll_ref)]
                hf_err, hf_mean = max(hf_diffs), sum(hf_diffs) / len(hf_diffs)
                ties = near_tie_positions(ref, hf_bf16, ids)  # nll[j] is predicted at position j
                kept = [dv for j, dv in enumerate(diffs) if j not in ties]
                moe_err, moe_mean = max(kept, default=0.0), sum(diffs) / len(diffs)
                direct = max(abs(a - b) for a, b in zip(got["nll"], nll_hfb))
                ok = moe_err <= 2 * hf_err and moe_mean <= 2 * hf_mean
                tie_note = f", all-token max {diffs[worst]:.2e} at token {worst + 1}" if worst in ties else ""
                rep.add(name, wdtype, f"score nll (moe4j {mdtype})", text, ok,
                        f"max|moe4j-ref| {moe_err:.2e} vs 2x {2 * hf_err:.2e}, mean {moe_mean:.2e} vs 2x {2 * hf_mean:.2e}; "
                        f"|moe4j-HFbf16| max {direct:.2e}; {len(diffs)} tokens, {len(ties & set(range(len(diffs))))} "
                        f"near-tie{tie_note}")


def check_generate(rep, m4, name, wdtype, d, ref, hf_bf16, tok, eos):
    hf_model = ref if wdtype == "f32" else hf_bf16
    for prompt in GEN_PROMPTS:
        prompt_ids = tok(prompt).input_ids
        hf_new = hf_greedy(hf_model, prompt_ids, eos)
        probe = m4.greedy_ids(d, prompt, wdtype)
        if probe["prompt_ids"] != prompt_ids:
            rep.add(name, wdtype, "generate ids", prompt, False, f"prompt ids {probe['prompt_ids']} vs HF {prompt_ids}")
            continue
        m_new = probe["ids"]
        i = first_diff(m_new, hf_new)
        if i is None:
            rep.add(name, wdtype, "generate ids", prompt, True, f"{len(hf_new)} tokens equal ({probe['finish']})")
        elif wdtype == "f32" or i >= min(len(m_new), len(hf_new)):
            rep.add(name, wdtype, "generate ids", prompt, False,
                    f"first difference at new token {i}: moe4j {m_new[i:i+4]} vs HF {hf_new[i:i+4]}")
        else:
            ctx = prompt_ids + hf_new[:i]
            lr, lb = hf_logits(ref, ctx), hf_logits(hf_bf16, ctx)
            margin = abs(lr[hf_new[i]] - lr[m_new[i]]).item()
            hf_err = (lr - lb).abs().max().item()
            rep.add(name, wdtype, "generate ids", prompt, margin <= 2 * hf_err,
                    f"differs at new token {i} (moe4j {m_new[i]} vs HF {hf_new[i]}): ref margin {margin:.2e} "
                    f"vs 2x|HFbf16-ref| {2 * hf_err:.2e}")
        cli_text = m4.generate_text(d, prompt, wdtype)
        hf_text = tok.decode(hf_new, skip_special_tokens=True)
        m_text = tok.decode(m_new, skip_special_tokens=True)
        # the CLI text must be moe4j's own ids decoded the HF way; equal to HF's text where the ids are
        rep.add(name, wdtype, "generate text (CLI)", prompt, cli_text == m_text and (i is not None or cli_text == hf_text),
                "equal to HF" if cli_text == hf_text else
                f"CLI {cli_text!r} vs HF-decoded moe4j ids {m_text!r} vs HF {hf_text!r}")


def check_tokenizer(rep, m4, d, tok, label):
    for text in TOKENIZE_TEXTS:
        for specials in (False, True):
            hf_ids = tok(text, add_special_tokens=specials).input_ids
            got = m4.tokenize(d, text, specials)
            i = first_diff(got["ids"], hf_ids)
            kind = "encode" + (" +specials" if specials else "")
            rep.add(label, "-", kind, text, i is None,
                    f"{len(hf_ids)} ids equal" if i is None else f"first diff at {i}: {got['ids'][i:i+3]} vs {hf_ids[i:i+3]}")
            if not specials:
                hf_pieces = tok.convert_ids_to_tokens(hf_ids)
                rep.add(label, "-", "pieces", text, got.get("pieces") == hf_pieces,
                        "equal" if got.get("pieces") == hf_pieces else f"{got.get('pieces')} vs {hf_pieces}")
        ids = tok(text).input_ids
        dec = m4.decode(d, ids)
        for key, skip in (("text", True), ("with_specials", False)):
            want = tok.decode(ids, skip_special_tokens=skip)
            rep.add(label, "-", f"decode ({'skip' if skip else 'keep'} specials)", text, dec[key] == want,
                    "equal" if dec[key] == want else f"{dec[key]!r} vs {want!r}")
    # bytes that are not valid UTF-8 on their own: both must replace them the same way
    for ids in ([257, 72, 195], [240, 159, 153], [72, 255, 105, 128, 128], [226, 130, 172, 226, 130]):
        dec = m4.decode(d, ids)
        want = tok.decode(ids, skip_special_tokens=True)
        rep.add(label, "-", "decode invalid UTF-8", str(ids), dec["text"] == want,
                "equal" if dec["text"] == want else f"{dec['text']!r} vs {want!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(HERE, "models"))
    ap.add_argument("--moe4j", default=os.path.join(ROOT, "moe4j"), help="launcher command (default ./moe4j)")
    ap.add_argument("--classpath", default=os.path.join(ROOT, "java", "cli", "target", "moe4j.jar"),
                    help="classpath holding moe4j and its dependencies, for Moe4jProbe.java")
    ap.add_argument("--f32-rtol", type=float, default=1e-5)
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated checks to skip: score,generate,tokenize")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))
    m4 = Moe4j(args.moe4j, args.classpath)
    rep = Report()
    dirs = sorted(x for x in os.listdir(args.models) if x.endswith(("-f32", "-bf16")))
    if args.only:
        keep = set(args.only.split(","))
        dirs = [x for x in dirs if x.rsplit("-", 1)[0] in keep]
    if not dirs:
        sys.exit(f"--models {args.models}: no NAME-f32 / NAME-bf16 directories (run make_models.py)")
    for x in dirs:
        name, wdtype = x.rsplit("-", 1)
        d = os.path.join(args.models, x)
        tok = AutoTokenizer.from_pretrained(d)
        ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        hf_bf16 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).eval() if wdtype == "bf16" else None
        if "score" not in skip:
            check_score(rep, m4, name, wdtype, d, ref, hf_bf16, tok, args.f32_rtol)
        if "generate" not in skip:
            check_generate(rep, m4, name, wdtype, d, ref, hf_bf16, tok, ref.generation_config.eos_token_id)
        print(f"done {x}", file=sys.stderr, flush=True)
    if "tokenize" not in skip:
        d = os.path.join(args.models, dirs[0])
        check_tokenizer(rep, m4, d, AutoTokenizer.from_pretrained(d), "tokenizer")
        # the same tokenizer as transformers itself saves it (its own tokenizer.json serialization,
        # tokenizer_config.json without added_tokens_decoder), as checkpoints from the Hub come
        resaved = tempfile.mkdtemp(prefix="hf-tokenizer-")
        AutoTokenizer.from_pretrained(d).save_pretrained(resaved)
        check_tokenizer(rep, m4, resaved, AutoTokenizer.from_pretrained(resaved), "tokenizer (HF-saved)")
    rep.print()
    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}; "
          f"{len(rep.rows) - len(rep.failures)}/{len(rep.rows)} checks pass")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(dict(transformers=transformers.__version__, torch=torch.__version__, rows=rep.rows), fh,
                      indent=1, ensure_ascii=False)
    sys.exit(1 if rep.failures else 0)


if __name__ == "__main__":
    main()
