from transformers import CLIPTokenizer

from artshield.models.tokenizer import learn_bpe, write_tokenizer


def test_bpe_is_deterministic_and_merges_frequent_words():
    texts = ["trash can icon, papirus style"] * 5 + ["folder icon, tango style"] * 3
    m1, m2 = learn_bpe(texts, 200), learn_bpe(list(reversed(texts)), 200)
    assert m1 == m2
    assert ("icon", "</w>") not in m1 and any("".join(m) == "icon</w>" for m in m1)


def test_written_tokenizer_loads_with_clip_tokenizer(tmp_path):
    write_tokenizer(["trash can icon, papirus style", "folder icon, tango style"] * 3, tmp_path, 100, 16)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    known = tok("trash can icon").input_ids
    assert known[0] == tok.bos_token_id and known[-1] == tok.eos_token_id and len(known) == 5
    # an unseen word still tokenizes, into smaller pieces
    unseen = tok("gartoon").input_ids
    assert len(unseen) > 3 and tok.unk_token_id not in unseen[1:-1]
    assert len(tok("x " * 50, truncation=True).input_ids) == 16
