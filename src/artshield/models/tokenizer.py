"""A small byte-pair vocabulary in the CLIP tokenizer's file format.

The real CLIP vocabulary has 49,408 entries; the embedded model's captions use a few hundred words,
so it gets a vocabulary learnt from them with the same algorithm (BPE over lower-cased words with
an end-of-word marker). Words outside it split into learnt pieces or single characters, exactly as
rare words do in CLIP. The files load with transformers' CLIPTokenizer.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes that CLIP's tokenizer uses (GPT-2's byte mapping)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def learn_bpe(texts: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Merges learnt greedily by pair frequency; ties broken alphabetically, so it is deterministic."""
    words = Counter()
    for t in texts:
        for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", t.lower()):
            words[tuple(w[:-1]) + (w[-1] + "</w>",)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def write_tokenizer(texts: list[str], out_dir: Path, num_merges: int, max_length: int) -> CLIPTokenizer:
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = learn_bpe(texts, num_merges)
    chars = _byte_chars()
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {}
    for tok in vocab_list:
        vocab.setdefault(tok, len(vocab))
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer(str(out_dir / "vocab.json"), str(out_dir / "merges.txt"), pad_token=EOS,
                        model_max_length=max_length)
    # vocab.json and merges.txt stay beside what save_pretrained writes: older transformers need them
    tok.save_pretrained(out_dir)
    return tok


def write_t5_tokenizer(texts: list[str], out_dir: Path, vocab_size: int = 64):
    """A small unigram vocabulary in T5's tokenizer format (lower-cased words split at spaces, "</s>"
    after every sequence, "<pad>" id 0, "</s>" id 1, "<unk>" id 2, as T5's), learnt from `texts` with
    the tokenizers library: what the T5 encoders of SD3 and FLUX read, for tiny test models. Loads
    with transformers' T5TokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, unk_token="<unk>",
                                                           special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    t5 = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
    t5.save_pretrained(out_dir)
    return t5
