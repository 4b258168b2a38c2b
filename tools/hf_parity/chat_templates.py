#!/usr/bin/env python3
"""Renders conversations with transformers' apply_chat_template(tokenize=False) and stores the
results as the expected strings of moe4j's HfParityChatTemplateTest (which renders the same cases
with io.moe4j.text.ChatTemplate, so the comparison runs in CI without Python).

Templates: the Mixtral-8x7B-Instruct-v0.1, Qwen3 (MoE) and OLMoE-1B-7B-Instruct chat templates as
stored in moe4j's test resources (java/core/src/test/resources/io/moe4j/text/chat/*.jinja). Each case
is rendered through a tokenizer loaded from a directory of the byte-level tokenizer (make_models.py)
with the model's bos/eos strings passed as template variables, exactly what apply_chat_template gives
the template. A case whose template raises (raise_exception, or a Jinja error) is stored with its
error message instead of a string.

usage: chat_templates.py --tokenizer-dir DIR [--out FILE]
"""
import argparse
import json
import os

import transformers
from transformers import AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATES = os.path.join(ROOT, "java", "core", "src", "test", "resources", "io", "moe4j", "text", "chat")
OUT = os.path.join(ROOT, "java", "core", "src", "test", "resources", "io", "moe4j", "infer", "hfparity",
                   "chat_templates_expected.json")

# template file -> the bos/eos text of that model's tokenizer (None: the model has no bos)
MODELS = {
    "mixtral.jinja": ("<s>", "</s>"),
    "qwen3.jinja": (None, "<|im_end|>"),
    "olmoe.jinja": ("<|endoftext|>", "<|endoftext|>"),
}


def u(c):
    return {"role": "user", "content": c}


def a(c):
    return {"role": "assistant", "content": c}


def s(c):
    return {"role": "system", "content": c}


CONVERSATIONS = {
    "one user turn": [u("Hi")],
    "two turns then user": [u("Hi"), a("Hello"), u("How are you?")],
    "ends with assistant": [u("Hi"), a("Hello")],
    "system first": [s("Be brief."), u("Hi")],
    "system, two turns": [s("You are a pirate."), u("Hi"), a("Arr."), u("Where is the treasure?")],
    "unicode and markup in content": [u("naïve café 🙂 {{ not a tag }} {% neither %} <|bos|> \"quoted\" 'single'"),
                                      a("  spaced  \n\nlines\n"), u("\ttab\r\nend")],
    "empty content": [u(""), a(""), u("x")],
    "assistant first": [a("Hello"), u("Hi")],
    "two users in a row": [u("a"), u("b")],
    "thinking in the last assistant turn": [u("Hi"), a("<think>\nweigh it\n</think>\n\nHello")],
    "thinking in an earlier assistant turn": [u("Q1"), a("<think>\nr1\n</think>\n\nA1"), u("Q2"),
                                              a("<think>r2</think>A2")],
    "system in the middle": [u("Hi"), s("Now be formal."), u("Hello")],
    "tool messages": [u("What is 2+2?"), {"role": "tool", "content": "4"}, {"role": "tool", "content": "four"}],
}


# Qwen3's template writes each tool with |tojson: checks moe4j's JSON formatting against HF's
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city, e.g. \"Zürich\" or 東京",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                       "days": {"type": "integer", "minimum": 1}},
                       "required": ["city"]}}},
    {"type": "function", "function": {"name": "now", "description": "", "parameters": {
        "type": "object", "properties": {}, "flag": True, "none": None, "ratio": 0.5}}},
]
TOOL_CONVERSATIONS = ["one user turn", "system first", "tool messages"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer-dir", required=True, help="a directory with moe4j's byte-level tokenizer.json")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    cases = []
    for template_file, (bos, eos) in MODELS.items():
        with open(os.path.join(TEMPLATES, template_file), encoding="utf-8") as fh:
            template = fh.read()
        extras = [{}] + ([{"enable_thinking": False}, {"enable_thinking": True}] if template_file == "qwen3.jinja" else [])
        for conv_name, messages in CONVERSATIONS.items():
            for gen in (True, False):
                for extra in extras:
                    kwargs = dict(extra, eos_token=eos)
                    if bos is not None:
                        kwargs["bos_token"] = bos
                    case = dict(template=template_file, bos_token=bos, eos_token=eos, name=conv_name,
                                messages=messages, add_generation_prompt=gen, extra=extra)
                    try:
                        case["expected"] = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                                   add_generation_prompt=gen, **kwargs)
                    except Exception as e:  # the template's raise_exception or a Jinja error
                        case["error"] = f"{type(e).__name__}: {e}"
                    cases.append(case)
        if template_file == "qwen3.jinja":
            for conv_name in TOOL_CONVERSATIONS:
                for gen in (True, False):
                    messages = CONVERSATIONS[conv_name]
                    case = dict(template=template_file, bos_token=bos, eos_token=eos, name=conv_name + " + tools",
                                messages=messages, add_generation_prompt=gen, extra={"tools": TOOLS})
                    case["expected"] = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                               add_generation_prompt=gen, tools=TOOLS, eos_token=eos)
                    cases.append(case)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(dict(generator="tools/hf_parity/chat_templates.py", transformers=transformers.__version__,
                       cases=cases), fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    n_err = sum("error" in c for c in cases)
    print(f"{args.out}: {len(cases)} cases ({n_err} raise), transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
