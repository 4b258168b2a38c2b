#!/usr/bin/env python3
"""Writes the HF parity fixtures that CI replays without Python (HfParityModelTest).

For each architecture variant of make_models.py, shrunk to hidden size 32 so the files stay small
(bf16 weights, ~0.1 MB each): config.json + model.safetensors from transformers' save_pretrained, and
expected.json with what transformers computes in fp32 on those weights: per-token NLL (log_softmax in
fp64) for a few id sequences and the greedy continuation (generate, do_sample=False) of a few prompts.
moe4j loads the bf16 file as f32 (an exact upcast), so the fp32 tolerance applies.

usage: make_ci_fixtures.py [--out DIR]
"""
import argparse
import json
import os
import shutil

import torch
import transformers

import make_models
from compare import MAX_NEW, hf_greedy, hf_nll

OUT = os.path.join(make_models.ROOT, "java", "core", "src", "test", "resources", "io", "moe4j", "infer", "hfparity",
                   "models")

SHRINK = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2)
SIZES = {
    "mixtral": dict(head_dim=8, intermediate_size=40),
    "qwen3_moe_norm": dict(head_dim=12, intermediate_size=36, moe_intermediate_size=24),
    "qwen3_moe_nonorm": dict(head_dim=8, intermediate_size=28, moe_intermediate_size=20),
    "olmoe": dict(intermediate_size=24),
}
TEXTS = ["The quick brown fox jumps over the lazy dog.", "add:123+45=168", "naïve café 🙂 日本"]
PROMPTS = ["Hello", "add:12+7=", "über 🙂"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--seed", type=int, default=99)
    args = ap.parse_args()
    for i, (name, (cfg_cls, model_cls, extra)) in enumerate(make_models.VARIANTS.items()):
        cfg = dict(make_models.COMMON, **extra)
        cfg.update(SHRINK)
        cfg.update(SIZES[name])
        config = getattr(transformers, cfg_cls)(**cfg)
        torch.manual_seed(args.seed + i)
        model = getattr(transformers, model_cls)(config).eval()
        make_models.randomize(model, args.seed + i)
        d = os.path.join(args.out, name)
        shutil.rmtree(d, ignore_errors=True)
        model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
        for f in os.listdir(d):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(d, f))
        # the reference: fp32 arithmetic on exactly the stored (bf16) weights, loaded afresh (casting
        # the model back with .to() would keep RoPE's inv_freq buffer rounded to bf16)
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        bos, eos = config.bos_token_id, config.eos_token_id
        scores = []
        for t in TEXTS:
            ids = [bos] + list(t.encode("utf-8"))
            scores.append(dict(text=t, ids=ids, nll=hf_nll(model, ids)))
        greedy = []
        for p in PROMPTS:
            ids = [bos] + list(p.encode("utf-8"))
            greedy.append(dict(prompt=p, prompt_ids=ids, new_ids=hf_greedy(model, ids, eos)))
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as fh:
            json.dump(dict(generator="tools/hf_parity/make_ci_fixtures.py", transformers=transformers.__version__,
                           torch=torch.__version__, model_class=model_cls, max_new_tokens=MAX_NEW, score=scores,
                           greedy=greedy),
                      fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{d}: {model_cls}, {sum(p.numel() for p in model.parameters())} parameters, {size} bytes")


if __name__ == "__main__":
    main()
