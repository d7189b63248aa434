"""An independent tokenizer for SmolLM2, to check ours against
(core/tests/tokenizer_reference.rs). It reads the GGUF with llama.cpp's
`gguf` package and encodes with `tiktoken` (a different BPE implementation:
merge ranks over raw bytes), with the same pre-tokenization: every digit on
its own, then the GPT-2 split pattern without a prefix space.

Writes core/tests/fixtures/tokenizer-reference.json: each string and its ids.
Run: .cache/bench-venv/bin/pip install tiktoken gguf, then
     .cache/bench-venv/bin/python scripts/reference/tokenizer_reference.py
"""

import json
import sys

import gguf
import tiktoken

GGUF = sys.argv[1] if len(sys.argv) > 1 else ".cache/models/SmolLM2-135M-Instruct.Q8_0.gguf"
OUT = "core/tests/fixtures/tokenizer-reference.json"

STRINGS = [
    "Hello, world!",
    "MAP 58 mmHg, lactate 4.1 mmol/L, urine 120 mL per 4 h.",
    "Norepinephrine 0.22 µg/kg/min; SpO2 96%; FiO2 0.40; pH 7.31.",
    "simulate(vaso=2, fluid=3) -> survival 0.81 [0.74, 0.88]",
    "prescribe {\"fluid\": 1, \"vaso\": 0}",
    "Température 38.5 °C — patient très malade; 体温 38.5 度; ΔSOFA +2 ✓",
    "  leading spaces,\ttabs\nand\n\nnew lines   ",
    "It's the patient's 3rd day; they've had 2,500 mL.",
    "<|im_start|>system\nYou are a careful ICU assistant.<|im_end|>\n<|im_start|>user\nMAP 61?<|im_end|>\n<|im_start|>assistant\n",
    "1234567890 3.14159 -0.5 1e-3",
    "emoji 🩺💉 and symbols ≥65 mmHg ≤ 2 mmol/L",
]

# GPT-2's byte <-> unicode mapping, written out (the vocab stores tokens this way).
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def field(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") if f.types[-1] == gguf.GGUFValueType.STRING else int(f.parts[i][0]) for i in f.data]


reader = gguf.GGUFReader(GGUF)
tokens = field(reader, "tokenizer.ggml.tokens")
types = field(reader, "tokenizer.ggml.token_type")
merges = field(reader, "tokenizer.ggml.merges")
decode_char = {c: b for b, c in bytes_to_unicode().items()}
special = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind == 3}


def as_bytes(token):
    return bytes(decode_char[c] for c in token)


# tiktoken ranks: single bytes first, then each merge's product in merge order.
ranks = {bytes([b]): b for b in range(256)}
for a, b in (m.split(" ", 1) for m in merges):
    merged = as_bytes(a) + as_bytes(b)
    ranks.setdefault(merged, len(ranks))
id_of = {as_bytes(t): i for i, t in enumerate(tokens) if t not in special}

pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
encoding = tiktoken.Encoding("smollm2-reference", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})


def encode(text):
    ids = []
    # Split on control tokens first; they are single ids.
    pieces = [text]
    for token in special:
        pieces = [part for piece in pieces for part in _split_keep(piece, token)]
    for piece in pieces:
        if piece in special:
            ids.append(special[piece])
        else:
            ids.extend(id_of[encoding.decode_single_token_bytes(t)] for t in encoding.encode_ordinary(piece))
    return ids


def _split_keep(text, token):
    if token not in text or text == token:
        return [text]
    out = []
    for i, part in enumerate(text.split(token)):
        if i:
            out.append(token)
        if part:
            out.append(part)
    return out


json.dump([{"text": s, "ids": encode(s)} for s in STRINGS], open(OUT, "w"), ensure_ascii=False, indent=1)
print(f"wrote {OUT} ({len(STRINGS)} strings)")
