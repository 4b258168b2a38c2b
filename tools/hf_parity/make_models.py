#!/usr/bin/env python3
"""Writes tiny random-weight Hugging Face checkpoints for moe4j's HF parity check.

One directory per (architecture variant, dtype) under OUT (default tools/hf_parity/models):
config.json + model.safetensors written by transformers' save_pretrained, and moe4j's own
byte-level tokenizer.json / tokenizer_config.json (vocab 259: bytes, <|pad|>, <|bos|>, <|endoftext|>)
written by io.moe4j.text.ByteTokenizer through WriteByteTokenizer.java.

Weights are re-drawn with larger scales than transformers' init (std 0.02 would leave every logit
near zero, routing near-uniform and greedy decoding decided by noise), and norm weights are moved
away from 1 so that a norm applied to the wrong tensor or axis changes the output.

usage: make_models.py [--out DIR] [--java-classes java/core/target/classes]
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import torch
import transformers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

COMMON = dict(
    vocab_size=259,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,  # GQA: 2 query heads per kv head
    hidden_act="silu",
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    bos_token_id=257,
    eos_token_id=258,
    pad_token_id=256,
    attention_dropout=0.0,
)

# name -> (config class name, model class name, extra config keys)
VARIANTS = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(
        num_hidden_layers=3, intermediate_size=96, num_local_experts=8, num_experts_per_tok=2,
        head_dim=16, sliding_window=None, router_jitter_noise=0.0)),
    # head_dim 24 != hidden/heads (16); layer 0 dense through mlp_only_layers; top-k renormalized
    "qwen3_moe_norm": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        num_hidden_layers=3, head_dim=24, intermediate_size=80, moe_intermediate_size=48,
        num_experts=6, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[0], use_sliding_window=False, attention_bias=False)),
    # decoder_sparse_step 2: layers 1 and 3 are MoE, 0 and 2 dense; top-k weights not renormalized
    "qwen3_moe_nonorm": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        num_hidden_layers=4, head_dim=16, intermediate_size=72, moe_intermediate_size=40,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=2,
        mlp_only_layers=[], use_sliding_window=False, attention_bias=False)),
    # q_norm / k_norm over the whole projections; top-k not renormalized (OLMoE's default)
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM", dict(
        num_hidden_layers=2, intermediate_size=56, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=False, clip_qkv=None, attention_bias=False)),
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name and p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                # [.., out, in] (also fused 3-D expert tensors): scale by the input width
                fan_in = p.shape[-1]
                scale = 2.0 if ("lm_head" in name or "gate.weight" in name) else 1.2
                p.copy_(torch.randn(p.shape, generator=g) * (scale / fan_in ** 0.5))


def write_tokenizer(directory, classes):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "WriteByteTokenizer.java")
    jars = []
    m2 = os.path.expanduser("~/.m2/repository/com/fasterxml/jackson/core")
    # the jackson version moe4j builds against, read from the core module's dependency list
    version = jackson_version()
    for art in ("jackson-core", "jackson-databind", "jackson-annotations"):
        found = sorted(glob.glob(os.path.join(m2, art, version + "*", art + "-" + version + "*.jar")))
        if not found:
            found = sorted(glob.glob(os.path.join(m2, art, "*", "*.jar")))
        if not found:
            sys.exit(f"no {art} jar under {m2}; run mvn -o install -DskipTests first")
        jars.append(found[-1])
    cp = os.pathsep.join([classes] + jars)
    subprocess.run(["java", "-cp", cp, src, directory], check=True)


def jackson_version():
    import re
    with open(os.path.join(ROOT, "pom.xml")) as fh:
        m = re.search(r"<jackson.version>([^<]+)</jackson.version>", fh.read())
    return m.group(1) if m else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tools", "hf_parity", "models"))
    ap.add_argument("--java-classes", default=os.path.join(ROOT, "java", "core", "target", "classes"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.java_classes, "io", "moe4j", "text", "ByteTokenizer.class")):
        sys.exit(f"--java-classes {args.java_classes}: no io/moe4j/text/ByteTokenizer.class (build moe4j first)")
    os.makedirs(args.out, exist_ok=True)
    tok_dir = os.path.join(args.out, "_tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    write_tokenizer(tok_dir, args.java_classes)

    for i, (name, (cfg_cls, model_cls, extra)) in enumerate(VARIANTS.items()):
        config = getattr(transformers, cfg_cls)(**COMMON, **extra)
        torch.manual_seed(args.seed + i)
        model = getattr(transformers, model_cls)(config).to(torch.float32).eval()
        randomize(model, args.seed + i)
        for dtype_name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            d = os.path.join(args.out, f"{name}-{dtype_name}")
            shutil.rmtree(d, ignore_errors=True)
            model.to(dtype).save_pretrained(d, safe_serialization=True)
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(tok_dir, f), os.path.join(d, f))
            with open(os.path.join(d, "config.json")) as fh:
                saved = json.load(fh)
            print(f"{d}: {model_cls} {saved.get('torch_dtype', saved.get('dtype'))}"
                  f" {sum(p.numel() for p in model.parameters())} parameters")
        model.to(torch.float32)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
