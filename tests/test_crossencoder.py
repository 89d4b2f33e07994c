"""Cross-encoders: pair batching, scoring parity with sentence-transformers, loading rules."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATASETS
from harness.data import DatasetSpec, LocalDataset
from rankers.crossencoder import _own_modules_only, load_cross_encoder, score_pairs
from rankers.pairs import PairBatches

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def dl19_pairs():
    from pathlib import Path

    ds = LocalDataset(DatasetSpec("dl19", f"local:{DATASETS / 'trec-dl-2019'}"), Path("/"))
    queries, run = ds.queries(), ds.load_run("bm25")
    qids = sorted(ds.qrels())[:4]
    pairs = []
    for q in qids:
        docs = ds.docs(list(run[q])[:25])
        pairs += [(queries[q], d.joined()) for d in docs.values()]
    return pairs


def test_pair_batches_sort_pad_and_count_truncation(dl19_pairs, tiny_cross_encoders):
    tok = load_cross_encoder(str(tiny_cross_encoders["segment-cosine"]), "cpu").tokenizer
    batches = PairBatches(tok, dl19_pairs, max_length=64, batch_size=16)
    seen, widths = [], []
    for idx, feats in batches:
        seen += idx
        width = feats["input_ids"].shape[1]
        widths.append(width)
        real = feats["attention_mask"].sum(1)
        assert real.max() == width                      # padded to the batch's longest pair only
        assert set(feats) == {"input_ids", "attention_mask", "token_type_ids"}
        assert (feats["input_ids"][feats["attention_mask"] == 0] == tok.pad_token_id).all()
    assert sorted(seen) == list(range(len(dl19_pairs)))
    assert widths == sorted(widths, reverse=True)       # longest first
    full = [len(tok(q, d)["input_ids"]) for q, d in dl19_pairs]
    assert batches.stats.truncated == sum(n > 64 for n in full) > 0
    assert batches.stats.share == pytest.approx(batches.stats.truncated / len(dl19_pairs), abs=1e-4)
    loose = PairBatches(tok, dl19_pairs, max_length=512, batch_size=16)
    list(loose)
    assert loose.stats.truncated == 0 and loose.stats.tokens == sum(full)


@pytest.mark.parametrize("max_length", [32, 128, 256])
def test_pair_batches_read_word_prefixes_yet_give_the_full_texts_tokens(tiny_cross_encoders, max_length):
    """Tokenizing only each long document's first max_length words gives exactly the tokens (and the
    truncation count) that tokenizing the whole text gives: on real SciFact and NFCorpus abstracts
    (most longer than 128 words) and DL 2019 passages, plus the cases that must fall back to the full
    text: a query longer than the budget, and words the tokenizer drops (zero-width characters)."""
    from pathlib import Path

    from rankers.pairs import doc_prefixes

    tok = load_cross_encoder(str(tiny_cross_encoders["segment-cosine"]), "cpu").tokenizer
    pairs = []
    for name in ("beir/scifact", "beir/nfcorpus", "trec-dl-2019"):
        ds = LocalDataset(DatasetSpec(name, f"local:{DATASETS / name}"), Path("/"))
        queries = ds.queries()
        corpus = ds.corpus()
        ids = sorted(corpus)[:150]
        for i, q in enumerate(sorted(queries)[:10]):
            pairs += [(queries[q], corpus[d].joined()) for d in ids[i * 15:(i + 1) * 15]]
    long_query = " ".join(pairs[0][1].split()[:200])
    pairs += [(long_query, pairs[1][1]), (pairs[2][0], "\u200b " * 300 + pairs[2][1])]
    _, cut = doc_prefixes([d for _, d in pairs], max_length)
    assert cut.sum() >= (len(pairs) // 4 if max_length <= 128 else 50)   # the prefixes are really used
    batches = PairBatches(tok, pairs, max_length=max_length, batch_size=32)
    got = {i: feats["input_ids"][row][feats["attention_mask"][row] == 1].tolist()
           for idx, feats in batches for row, i in enumerate(idx)}
    want = tok([q for q, _ in pairs], [d for _, d in pairs], truncation="longest_first", max_length=max_length)
    assert all(got[i] == want["input_ids"][i] for i in range(len(pairs)))
    full = [len(x) for x in tok([q for q, _ in pairs], [d for _, d in pairs])["input_ids"]]
    assert batches.stats.truncated == sum(n > max_length for n in full)


def test_pair_batches_reject_bad_settings(dl19_pairs, tiny_cross_encoders):
    tok = load_cross_encoder(str(tiny_cross_encoders["classifier"]), "cpu").tokenizer
    with pytest.raises(ValueError, match="max_length"):
        PairBatches(tok, dl19_pairs, max_length=4)
    with pytest.raises(ValueError, match="batch_size"):
        PairBatches(tok, dl19_pairs, max_length=64, batch_size=0)
    assert list(PairBatches(tok, [], max_length=64)) == []


@pytest.mark.parametrize("head", ["segment-cosine", "classifier"])
def test_scores_equal_sentence_transformers_predict(dl19_pairs, tiny_cross_encoders, head):
    """rankbench's batching gives sentence-transformers' own scores, in input order."""
    import torch

    model = load_cross_encoder(str(tiny_cross_encoders[head]), "cpu")
    ours = score_pairs(model, dl19_pairs, max_length=128, batch_size=7)
    model.max_seq_length = 128
    theirs = model.predict(dl19_pairs, batch_size=32, activation_fn=torch.nn.Identity()).reshape(-1)
    assert np.allclose(ours, theirs, atol=1e-5), np.abs(ours - theirs).max()
    assert np.std(ours) > 0                                # not a constant head


def test_only_rankbench_heads_are_trusted(tiny_cross_encoders, tmp_path):
    assert _own_modules_only(tiny_cross_encoders["segment-cosine"])
    assert not _own_modules_only(tiny_cross_encoders["classifier"])     # plain: nothing to trust
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(tiny_cross_encoders["segment-cosine"], evil)
    mods = json.loads((evil / "modules.json").read_text())
    mods.append({"idx": 9, "name": "9", "path": "9_X", "type": "evil.Module"})
    (evil / "modules.json").write_text(json.dumps(mods))
    assert not _own_modules_only(evil)
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_cross_encoder(str(evil), "cpu")


def test_segment_cosine_finds_the_segments_from_separators_as_bert_marks_them(dl19_pairs):
    """A tokenizer without segment ids (MPNet's) gives the head the same split BERT's ids give."""
    import torch

    from rankers._models import resolve_model
    from rankers.heads import SegmentCosine
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(resolve_model("sentence-transformers/all-MiniLM-L6-v2").path))
    enc = tok([q for q, _ in dl19_pairs[:16]], [d for _, d in dl19_pairs[:16]], truncation=True, max_length=64,
              padding=True, return_tensors="pt")
    h = torch.randn(*enc["input_ids"].shape, 8, generator=torch.Generator().manual_seed(0))
    typed = SegmentCosine()({**enc, "token_embeddings": h})["scores"]
    untyped = {k: v for k, v in enc.items() if k != "token_type_ids"}
    by_sep = SegmentCosine(sep_token_id=tok.sep_token_id)({**untyped, "token_embeddings": h})["scores"]
    torch.testing.assert_close(by_sep, typed)
    with pytest.raises(ValueError, match="token_type_ids or a sep_token_id"):
        SegmentCosine()({**untyped, "token_embeddings": h})
