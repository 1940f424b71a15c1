"""The tokenize layer: BPE training, `.ds` shards (checked against datatrove), mixture planner, loader."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import humanize
import numpy as np
import pytest
import torch
from datatrove.data import Document
from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer
from datatrove.utils.dataset import DatatroveFileDataset

from pretrainlab.tokenize.loader import TokenLoader
from pretrainlab.tokenize.mixture import plan_mixture
from pretrainlab.tokenize.shards import ShardWriter, _metric, read_shard, token_size_for
from pretrainlab.tokenize.tokenizer import (
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    train_bpe,
)


def read_index(path: Path) -> np.ndarray:
    """The document end offsets of a `.ds` shard, as datatrove reads them."""
    return np.fromfile(str(path) + ".index", dtype="<u8")


def plan_tokens(doc_lengths: dict[str, np.ndarray], plan: np.ndarray) -> dict[str, int]:
    """Tokens each exercise contributes to a mixture plan."""
    return {
        name: int(np.asarray(doc_lengths[name], dtype=np.int64)[plan[plan[:, 0] == e, 1]].sum())
        for e, name in enumerate(sorted(doc_lengths))
    }


TRAIN_SCRIPT = """
import random, sys
from pathlib import Path
from pretrainlab.tokenize.tokenizer import save_tokenizer, train_bpe
rng = random.Random(0)
words = "alpha beta gamma was born in on the university of studied works at city He She".split()
words += [f"Name{i}" for i in range(200)]
texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + "." for _ in range(3000)]
save_tokenizer(train_bpe(texts, 500), Path(sys.argv[1]))
"""


def corpus(n: int, seed: int = 0) -> list[str]:
    """Small synthetic biographies: groups of five documents about one person."""
    rng = random.Random(seed)
    cities = ["Lyon", "Kraków", "Osaka", "Lima", "Perth", "Zürich"]
    out = []
    for i in range(n):
        person = f"Person{i // 5} Smith"
        out.append(
            f"{person} was born on {rng.randint(1, 28)} May {rng.randint(1900, 2000)} "
            f"in {rng.choice(cities)}. "
            f"{'She' if i % 2 else 'He'} studied at the University of {rng.choice(cities)} — très bien! 🎓"
        )
    return out


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    save_tokenizer(train_bpe(corpus(400), 400), path)
    return path


def write_corpus(
    out: Path, tok_path: Path, texts: list[str], seed: int, max_tokens: int = 2**27
) -> list[Path]:
    tok = load_tokenizer(tok_path)
    ids = encode_batch(tok, texts)
    plan = plan_mixture({"bio": np.array([len(x) + 1 for x in ids])}, {"bio": 1.0}, None, seed)
    with ShardWriter(out, tok.get_vocab_size(), str(tok_path), max_tokens_per_shard=max_tokens) as w:
        for _, d in plan:
            w.add(ids[d])
    return sorted(out.glob("*.ds"))


# --- tokenizer -------------------------------------------------------------------------------------


def test_tokenizer_is_deterministic_across_processes(tmp_path: Path) -> None:
    paths = [tmp_path / f"t{i}.json" for i in range(2)]
    for path in paths:
        subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(path)], check=True)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert load_tokenizer(paths[0]).get_vocab_size() == 500


def test_tokenizer_round_trip_and_specials(tok_path: Path) -> None:
    tok = load_tokenizer(tok_path)
    assert tok.token_to_id(EOS) == EOS_ID == 0 and tok.token_to_id(PAD) == PAD_ID == 1
    texts = corpus(20) + ["  leading spaces, Ünïcode ✓ and numbers 12345\nnew line", ""]
    ids = encode_batch(tok, texts)
    for text, arr in zip(texts, ids, strict=True):
        assert arr.dtype == np.uint32
        assert EOS_ID not in arr.tolist()
        assert tok.decode(arr.tolist()) == text
    assert len(ids[0]) < len(texts[0].encode()) / 2  # merges learnt


# --- shards ----------------------------------------------------------------------------------------


def test_shards_deterministic_per_seed(tmp_path: Path, tok_path: Path) -> None:
    texts = corpus(300)
    runs = [write_corpus(tmp_path / d, tok_path, texts, seed) for d, seed in [("a", 1), ("b", 1), ("c", 2)]]

    def contents(paths: list[Path]) -> list[bytes]:
        return [Path(str(p) + ext).read_bytes() for p in paths for ext in ("", ".index", ".metadata")]

    assert contents(runs[0]) == contents(runs[1])
    assert contents(runs[0]) != contents(runs[2])


def test_shard_token_width(tmp_path: Path) -> None:
    assert token_size_for(1000) == 2 and token_size_for(65536) == 2 and token_size_for(65537) == 4
    docs = [np.array([5, 999], dtype=np.uint32), np.array([65535], dtype=np.uint32)]
    with ShardWriter(tmp_path / "small", 65536, "fake") as w:
        for d in docs:
            w.add(d)
    [small] = sorted((tmp_path / "small").glob("*.ds"))
    assert small.stat().st_size == 5 * 2
    assert read_shard(small).dtype == np.uint16
    assert read_shard(small).tolist() == [5, 999, 0, 65535, 0]

    big_docs = [np.array([70000, 3], dtype=np.uint32), np.array([], dtype=np.uint32), np.array([69999])]
    w = ShardWriter(tmp_path / "big", 70001, "fake")
    for d in big_docs:
        w.add(d)
    [big] = w.close()
    assert big.stat().st_size == 6 * 4
    assert read_shard(big).dtype == np.uint32
    assert read_shard(big).tolist() == [70000, 3, 0, 0, 69999, 0]
    assert read_index(big).tolist() == [3, 4, 6]
    assert Path(str(big) + ".metadata").read_text() == "fake|4\n6\n6.00 T"

    with pytest.raises(ValueError, match="out of range"), ShardWriter(tmp_path / "bad", 1000, "fake") as w:
        w.add(np.array([1000], dtype=np.uint32))
    assert list((tmp_path / "bad").iterdir()) == []


def test_unclosed_writer_leaves_no_shard(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path, 1000, "fake", max_tokens_per_shard=10)
    for _ in range(5):
        w.add(np.arange(2, 8, dtype=np.uint32))
    assert list(tmp_path.glob("*.ds")) == []
    paths = w.close()
    assert [p.name for p in paths] == [f"shard_{i:05d}.ds" for i in range(5)]
    assert w.close() == paths
    assert not list(tmp_path.glob("*.tmp"))


def test_shards_split_at_document_boundaries(tmp_path: Path) -> None:
    docs = [np.full(n, 7, dtype=np.uint32) for n in (3, 4, 2, 9, 1, 20)]
    with ShardWriter(tmp_path, 100, "fake", max_tokens_per_shard=10) as w:
        for d in docs:
            w.add(d)
    shards = sorted(tmp_path.glob("*.ds"))
    # (3+1)+(4+1) = 9 | (2+1) | (9+1) | (1+1) | (20+1) alone, larger than the limit
    assert [len(read_shard(p)) for p in shards] == [9, 3, 10, 2, 21]
    assert [read_index(p).tolist() for p in shards] == [[4, 9], [3], [10], [2], [21]]
    flat = np.concatenate([read_shard(p) for p in shards])
    assert flat.tolist() == np.concatenate([np.append(d, 0) for d in docs]).tolist()


def test_metadata_count_matches_humanize() -> None:
    values = [0, 1, 9, 10, 999, 1000, 9995, 99949, 99950, 999499, 999500, 123456789, 10**12 - 1]
    values += [random.Random(0).randrange(10**15) for _ in range(200)]
    assert [_metric(v) for v in values] == [humanize.metric(v, unit="T") for v in values]


def test_shard_bytes_equal_datatrove_tokenizer(tmp_path: Path, tok_path: Path) -> None:
    texts = corpus(250)
    step = DocumentTokenizer(
        output_folder=str(tmp_path / "dt"),
        tokenizer_name_or_path=str(tok_path),
        eos_token=EOS,
        save_filename="dt",
        shuffle_documents=False,
    )
    step.run(iter([Document(text=t, id=str(i)) for i, t in enumerate(texts)]), rank=0, world_size=1)
    tok = load_tokenizer(tok_path)
    with ShardWriter(tmp_path / "ours", tok.get_vocab_size(), str(tok_path)) as w:
        for ids in encode_batch(tok, texts):
            w.add(ids)
    for ext in ("", ".index", ".metadata"):
        ours = (tmp_path / "ours" / f"shard_00000.ds{ext}").read_bytes()
        assert ours == (tmp_path / "dt" / f"dt_00000_unshuffled.ds{ext}").read_bytes(), ext


def test_datatrove_dataset_reads_what_the_loader_yields(tmp_path: Path, tok_path: Path) -> None:
    seq_len = 31
    paths = write_corpus(tmp_path, tok_path, corpus(500), seed=3, max_tokens=3000)
    assert len(paths) > 2
    loader = TokenLoader(paths, seq_len, batch_size=4, seed=0, shuffle=False)
    g = 0
    for path in paths:
        ds = DatatroveFileDataset(str(path), seq_len, token_size=2)
        pos = DatatroveFileDataset(str(path), seq_len, token_size=2, return_positions=True)
        by_eos = DatatroveFileDataset(
            str(path), seq_len, token_size=2, return_positions=True, positions_from_eos_token_id=EOS_ID
        )
        for i in range(len(ds)):
            expected = ds[i]["input_ids"]
            assert torch.equal(torch.from_numpy(loader.window(g).astype(np.int64)), expected)
            item = pos[i]
            assert torch.equal(item["input_ids"], expected)
            assert torch.equal(item["positions"].long(), by_eos[i]["positions"].long())
            g += 1
    assert g == len(loader)
    windows = torch.stack([torch.from_numpy(loader.window(i).astype(np.int64)) for i in range(len(loader))])
    for step in range(len(loader) // 4):
        x, y = loader.batch(step)
        assert x.dtype == torch.int64 and x.shape == (4, seq_len)
        assert torch.equal(x, windows[step * 4 : step * 4 + 4, :-1])
        assert torch.equal(y, windows[step * 4 : step * 4 + 4, 1:])


# --- mixture ---------------------------------------------------------------------------------------


def lengths_fixture() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "bio": rng.integers(20, 80, size=2000),
        "khop": rng.integers(5, 15, size=300),
        "arith": rng.integers(10, 30, size=5000),
        "unused": rng.integers(10, 30, size=50),
    }


def test_mixture_honours_shares() -> None:
    lengths = lengths_fixture()
    shares = {"bio": 0.5, "khop": 0.3, "arith": 0.2, "unused": 0.0}
    total = 200_000
    plan = plan_mixture(lengths, shares, total, seed=0)
    assert plan.dtype == np.int64 and plan.shape[1] == 2
    got = plan_tokens(lengths, plan)
    assert got["unused"] == 0
    for name in ("bio", "khop", "arith"):
        assert abs(got[name] / total - shares[name]) < 0.02 * shares[name], (name, got[name])
    names = sorted(lengths)
    # khop has ~3,000 tokens and needs 60,000: every document appears in ~20 whole passes
    khop = plan[plan[:, 0] == names.index("khop"), 1]
    counts = np.bincount(khop, minlength=300)
    assert counts.min() >= 19 and counts.max() - counts.min() <= 1
    # bio has ~100,000 tokens and needs 100,000: about one pass, no document twice more than once
    assert np.bincount(plan[plan[:, 0] == names.index("bio"), 1]).max() <= 2
    # arith has more than it needs: a subset, each document at most once
    arith = plan[plan[:, 0] == names.index("arith"), 1]
    assert len(np.unique(arith)) == len(arith) < 5000


def test_mixture_without_budget_uses_everything_once() -> None:
    lengths = lengths_fixture()
    plan = plan_mixture(lengths, {"bio": 1.0}, None, seed=1)
    assert len(plan) == sum(len(v) for v in lengths.values())
    assert len(np.unique(plan, axis=0)) == len(plan)
    assert np.array_equal(plan, plan_mixture(lengths, {}, None, seed=1))
    assert not np.array_equal(plan, plan_mixture(lengths, {}, None, seed=2))


def test_mixture_spreads_groups() -> None:
    groups, per = 100, 5
    plan = plan_mixture({"bio": np.full(groups * per, 30)}, {"bio": 1.0}, None, seed=0)
    position = np.empty(len(plan), dtype=np.int64)
    position[plan[:, 1]] = np.arange(len(plan))
    pos = np.sort(position.reshape(groups, per), axis=1)
    gaps = np.diff(pos, axis=1)
    mean_distance = np.mean([abs(a - b) for row in pos for j, a in enumerate(row) for b in row[j + 1 :]])
    assert mean_distance > 0.1 * len(plan)
    assert (gaps == 1).mean() < 0.05  # adjacency only by chance


def test_mixture_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown"):
        plan_mixture({"a": np.ones(3)}, {"b": 1.0}, 10, seed=0)
    with pytest.raises(ValueError, match="positive"):
        plan_mixture({"a": np.ones(3)}, {"a": 0.0}, 10, seed=0)


# --- loader ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    with ShardWriter(out, 1000, "fake", max_tokens_per_shard=700) as w:
        for _ in range(300):
            w.add(rng.integers(2, 1000, size=rng.integers(1, 30)).astype(np.uint32))
    return sorted(out.glob("*.ds"))


def test_loader_is_resumable(shard_paths: list[Path]) -> None:
    a = TokenLoader(shard_paths, 15, 8, seed=4)
    it = iter(a)
    first = [next(it) for _ in range(10)]
    state = a.state_dict()
    assert state["step"] == 10 and state["seed"] == 4
    later = [next(it) for _ in range(3)]
    b = TokenLoader(shard_paths, 15, 8, seed=0)
    b.load_state_dict(state)
    resumed = [next(iter(b)) for _ in range(1)] + [b.batch(s) for s in (11, 12)]
    for (x1, y1), (x2, y2) in zip(later, resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    for s, (x, y) in enumerate(first):
        x2, y2 = TokenLoader(shard_paths, 15, 8, seed=4).batch(s)
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert torch.equal(x[:, 1:], y[:, :-1])
    assert not torch.equal(TokenLoader(shard_paths, 15, 8, seed=5).batch(0)[0], first[0][0])


def test_loader_epochs_wrap_and_reshuffle(shard_paths: list[Path]) -> None:
    loader = TokenLoader(shard_paths, 15, 7, seed=1)
    n = len(loader)
    steps = (3 * n) // 7 + 1
    ids = np.concatenate([loader.window_ids(s) for s in range(steps)])
    epochs = [ids[k * n : (k + 1) * n] for k in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    loader.step = steps
    assert loader.epoch == loader.state_dict()["epoch"] == steps * 7 // n
    seq = TokenLoader(shard_paths, 15, 7, seed=1, shuffle=False)
    assert seq.window_ids(n).tolist() == [(n * 7 + k) % n for k in range(7)]


def test_loader_ranks_partition_the_global_batch(shard_paths: list[Path]) -> None:
    world = 3
    single = TokenLoader(shard_paths, 15, 4 * world, seed=2)
    ranks = [TokenLoader(shard_paths, 15, 4, seed=2, rank=r, world_size=world) for r in range(world)]
    assert ranks[0].tokens_per_step == single.tokens_per_step
    steps = len(single) // (4 * world) + 2  # into the second epoch
    for step in range(steps):
        parts = [r.window_ids(step) for r in ranks]
        if step < steps - 2:
            assert len(set(np.concatenate(parts).tolist())) == 4 * world
        assert np.array_equal(np.concatenate(parts), single.window_ids(step))
        x = torch.cat([r.batch(step)[0] for r in ranks])
        assert torch.equal(x, single.batch(step)[0])
    with pytest.raises(ValueError):
        TokenLoader(shard_paths, 15, 4, seed=2, rank=3, world_size=3)
