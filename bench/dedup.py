"""Near-duplicate removal: pretrainlab.curate.minhash against datatrove's MinHash pipeline.

Run: .venv/bin/python bench/dedup.py [--docs N] [--threshold T] [--rounds R] [--no-datatrove] 2>dt.log

A planted corpus (random base documents of 60-200 words, exact copies with case and punctuation
changed, near-copies with a known true 5-gram Jaccard between about 0.45 and 0.97, templated
biographies that differ only in their numbers) is written as JSONL in a temp folder. Then:

- ours: `find_near_duplicates` on the texts in memory, with the banding `choose_bands` picks for
  the threshold (128 permutations), and again with datatrove's banding (112 permutations as 14 bands
  x 8 rows); "+ I/O" also reads the JSONL and writes the kept documents as JSONL.
- datatrove: MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster and MinhashDedupFilter
  through LocalPipelineExecutor on the same JSONL (2 input files, 2 workers; buckets run as 14 tasks),
  5-gram words, 14 x 8 hashes, numbers kept (`norm_numbers=False`, as ours by default), words split
  on whitespace (its English tokenizer needs spaCy; the text is already stripped of punctuation by
  then). It has no verification step: any shared band removes a document.

Recall is over planted (base, copy) pairs: caught when both end in one cluster. Precision is over
removed documents: one whose true Jaccard to the document its cluster keeps is below threshold - 0.1
is a false positive. The rates are docs/s over the whole run (JSONL to JSONL for datatrove).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from pretrainlab.curate.minhash import describe, exact_jaccard, find_near_duplicates

MONTHS = ("January", "March", "May", "July", "September", "November")


# ----------------------------------------------------------------------------- planted corpus


def _biography(person: int, rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.randint(1900, 1999)
    return (
        f"Person {person} was born on {day} {month} {year} in Lyon. Person {person} studied at "
        f"University {rng.randint(1, 50)} and graduated in {year + rng.randint(20, 25)}. Person {person} "
        f"worked for Company {rng.randint(1, 500)} for {rng.randint(2, 40)} years and lived at "
        f"{rng.randint(1, 300)} Main Street. Person {person} had {rng.randint(0, 6)} children and "
        f"retired in {year + rng.randint(55, 70)}."
    )


def _grams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int, float]]]:
    """Texts (shuffled) and planted pairs (base index, copy index, true Jaccard).

    80% base documents, 4% exact copies (half upper-cased with a "!" added), 12% near-copies,
    4% biographies from one template that differ only in numbers.
    """
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(nprng.choice(letters, size=rng.randint(2, 9))) for _ in range(50_000)})
    n_copy, n_near, n_bio = n * 4 // 100, n * 12 // 100, n * 4 // 100
    n_base = n - n_copy - n_near - n_bio
    lengths = nprng.integers(60, 201, size=n_base)
    flat = nprng.integers(0, len(vocab), size=int(lengths.sum()))
    bases: list[list[str]] = []
    pos = 0
    for length in lengths:
        bases.append([vocab[i] for i in flat[pos : pos + length]])
        pos += int(length)
    # (text, index of its base, true Jaccard to it)
    docs: list[tuple[str, int, float]] = [(" ".join(w), b, 1.0) for b, w in enumerate(bases)]
    for k in range(n_copy):
        b = rng.randrange(n_base)
        text = " ".join(bases[b])
        docs.append((text.upper() + "!" if k % 2 else text, b, 1.0))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        base = bases[b]
        target = rng.uniform(0.45, 0.97)
        k = max(1, round(len(base) * (1 - (2 * target / (1 + target)) ** 0.2)))
        words = list(base)
        for p in rng.sample(range(len(words)), k):
            words[p] = rng.choice(vocab)
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), rng.choice(vocab))
        ga, gb = _grams(base), _grams(words)
        docs.append((" ".join(words), b, len(ga & gb) / len(ga | gb)))
    for person in range(n_bio):
        docs.append((_biography(person, rng), -1, 0.0))
    order = list(range(len(docs)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    texts = [docs[i][0] for i in order]
    pairs = [(where[docs[i][1]], where[i], docs[i][2]) for i in range(n_base, n_base + n_copy + n_near)]
    return texts, pairs


# ----------------------------------------------------------------------------- scoring

BINS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.999), (0.999, 1.01))


def score(texts, pairs, rep: np.ndarray, threshold: float) -> dict:
    """Recall per true-Jaccard bin and precision of the removed documents (see module docstring)."""
    out: dict = {"removed": int(np.count_nonzero(rep != np.arange(len(rep))))}
    for lo, hi in BINS:
        sel = [(a, b) for a, b, j in pairs if lo <= j < hi]
        out[f"recall[{lo},{hi})"] = (sum(rep[a] == rep[b] for a, b in sel), len(sel))
    for name, lo in (("recall>=t", threshold), ("recall>=t+0.05", threshold + 0.05)):
        sel = [(a, b) for a, b, j in pairs if j >= lo]
        out[name] = (sum(rep[a] == rep[b] for a, b in sel), len(sel))
    removed = np.flatnonzero(rep != np.arange(len(rep)))
    true_j = np.array([exact_jaccard(texts[i], texts[rep[i]]) for i in removed])
    out["removed_below_t"] = int(np.count_nonzero(true_j < threshold))
    out["false_pos"] = int(np.count_nonzero(true_j < threshold - 0.1))
    out["precision"] = 1 - out["false_pos"] / max(len(removed), 1)
    return out


# ----------------------------------------------------------------------------- the two pipelines


def run_ours(texts: list[str], threshold: float, **kw) -> tuple[float, np.ndarray, object]:
    t0 = time.perf_counter()
    res = find_near_duplicates(texts, threshold=threshold, **kw)
    return time.perf_counter() - t0, res.representative, res


def run_ours_io(folder: Path, out: Path, threshold: float) -> float:
    """Read the JSONL input, dedup, write the kept documents as JSONL."""
    t0 = time.perf_counter()
    rows = [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.open()]
    res = find_near_duplicates([r["text"] for r in rows], threshold=threshold)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "kept.jsonl").open("w") as f:
        for r, keep in zip(rows, res.keep, strict=True):
            if keep:
                f.write(json.dumps(r) + "\n")
    return time.perf_counter() - t0


def _xxh64_utf8(text: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(text.encode("utf-8"))


def run_datatrove(folder: Path, work: Path, workers: int) -> tuple[dict[str, float], dict[int, int], set]:
    """The four MinHash stages; per-stage seconds, cluster id per clustered doc id, removed doc ids."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Signatures(MinhashDedupSignature):
        """The stage as shipped, but its xxhash64 gets bytes: datatrove 0.10.1 passes the shingle
        str, which xxhash 4 rejects ("Strings must be encoded before hashing"); xxhash 3 hashed
        the UTF-8 encoding of a str, which is what this does."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._hash_func = _xxh64_utf8

    class WhitespaceWords(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    norm = TextNormConfig(norm_numbers=False)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, norm_config=norm)
    files = len(list(folder.glob("*.jsonl")))
    sigs, buckets, remove = work / "sigs", work / "buckets", work / "remove"
    kept, dropped = work / "kept", work / "dropped"
    words = WhitespaceWords()
    dropped_writer = JsonlWriter(str(dropped), compression=None)
    stages = {
        "signatures": LocalPipelineExecutor(
            [JsonlReader(str(folder)), Signatures(str(sigs), config=cfg, language=words)],
            tasks=files,
            workers=workers,
            logging_dir=str(work / "logs1"),
        ),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(str(sigs), str(buckets), config=cfg)],
            tasks=cfg.num_buckets,
            workers=workers,
            logging_dir=str(work / "logs2"),
        ),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(str(buckets), str(remove), config=cfg, save_cluster_id=True)],
            tasks=1,
            workers=1,
            logging_dir=str(work / "logs3"),
        ),
        "filter": LocalPipelineExecutor(
            [
                JsonlReader(str(folder)),
                MinhashDedupFilter(str(remove), dropped_writer, load_cluster_ids=True),
                JsonlWriter(str(kept), compression=None),
            ],
            tasks=files,
            workers=workers,
            logging_dir=str(work / "logs4"),
        ),
    }
    seconds = {}
    for name, executor in stages.items():
        t0 = time.perf_counter()
        executor.run()
        seconds[name] = time.perf_counter() - t0
    cluster: dict[int, int] = {}
    removed: set[int] = set()
    for sub, is_removed in ((kept, False), (dropped, True)):
        for f in sorted(sub.glob("*.jsonl")):
            for line in f.open():
                row = json.loads(line)
                doc = int(row["id"])
                cid = row["metadata"].get("minhash_cluster_id", -1)
                if cid != -1:
                    cluster[doc] = cid
                if is_removed:
                    removed.add(doc)
    return seconds, cluster, removed


def datatrove_rep(n: int, cluster: dict[int, int], removed: set[int]) -> np.ndarray:
    """Representative array from datatrove's output: the kept member of each cluster."""
    rep = np.arange(n)
    keeper = {cid: doc for doc, cid in cluster.items() if doc not in removed}
    for doc in removed:
        rep[doc] = keeper[cluster[doc]]
    return rep


# ----------------------------------------------------------------------------- main

ROWS = (
    ("ours (in memory)", "ours", "ours_score"),
    ("ours, 112 perms as 14x8", "ours_14x8", "ours_14x8_score"),
    ("ours + JSONL read/write", "ours_io", "ours_score"),
    ("datatrove (4 stages)", "datatrove", "datatrove_score"),
)
SCORES = (("ours", "ours_score"), ("ours14x8", "ours_14x8_score"), ("datatrove", "datatrove_score"))


def write_jsonl(texts: list[str], folder: Path, files: int) -> None:
    folder.mkdir(parents=True)
    per = -(-len(texts) // files)
    for k in range(files):
        with (folder / f"{k:05d}.jsonl").open("w") as f:
            for i in range(k * per, min((k + 1) * per, len(texts))):
                f.write(json.dumps({"id": str(i), "text": texts[i]}) + "\n")


def fmt_recall(pair: tuple[int, int]) -> str:
    return f"{pair[0] / max(pair[1], 1):.3f} ({pair[0]}/{pair[1]})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds of ours and datatrove")
    ap.add_argument("--workers", type=int, default=2, help="datatrove worker processes")
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")), "?")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load}")
    t0 = time.perf_counter()
    texts, pairs = make_corpus(args.docs)
    print(f"corpus: {len(texts):,} docs, {len(pairs):,} planted pairs, {time.perf_counter() - t0:.1f} s")
    n, t = len(texts), args.threshold
    tmp = Path(tempfile.mkdtemp(prefix="dedup_bench_"))
    results: dict = {"docs": n, "threshold": t, "cpu": cpu, "rounds": []}
    try:
        folder = tmp / "input"
        write_jsonl(texts, folder, files=2)
        for r in range(args.rounds):
            rnd: dict = {"load_before": os.getloadavg()[0]}
            sec, rep, res = run_ours(texts, t)
            rnd["ours"] = sec
            if r == 0:
                results["ours_banding"] = describe(res.bands, res.rows)
                results["ours_candidates"] = (res.candidate_pairs, res.verified_pairs)
                results["ours_score"] = score(texts, pairs, rep, t)
            sec, rep, res = run_ours(texts, t, num_perm=112, bands=14, rows=8)
            rnd["ours_14x8"] = sec
            if r == 0:
                results["ours_14x8_score"] = score(texts, pairs, rep, t)
            rnd["ours_io"] = run_ours_io(folder, tmp / f"ours_out{r}", t)
            if not args.no_datatrove:
                work = tmp / f"dt{r}"
                stage_s, cluster, removed = run_datatrove(folder, work, args.workers)
                rnd["datatrove"] = sum(stage_s.values())
                rnd["datatrove_stages"] = stage_s
                if r == 0:
                    results["datatrove_score"] = score(texts, pairs, datatrove_rep(n, cluster, removed), t)
                shutil.rmtree(work, ignore_errors=True)
            rnd["load_after"] = os.getloadavg()[0]
            results["rounds"].append(rnd)
            print(f"round {r}: " + ", ".join(f"{k} {v:.1f}" for k, v in rnd.items() if isinstance(v, float)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    timed = [k for k in ("ours", "ours_14x8", "ours_io", "datatrove") if k in results["rounds"][0]]
    med = {k: statistics.median(rd[k] for rd in results["rounds"]) for k in timed}
    results["median_s"] = med
    cand, verified = results["ours_candidates"]
    print(f"\nours: {results['ours_banding']}; candidate pairs {cand:,}, verified {verified:,}")
    head = (
        "pipeline | median s | docs/s | vs datatrove | removed | recall J>=t | recall J>=t+0.05 | precision"
    )
    print(f"\n| {head} |")
    print("|---|---|---|---|---|---|---|---|")
    for label, key, sc in ROWS:
        if key not in med:
            continue
        s = results[sc]
        ratio = "n/a"
        if "datatrove" in med:  # median over rounds of the within-round ratio
            ratio = f"{statistics.median(rd['datatrove'] / rd[key] for rd in results['rounds']):.1f}x"
        recall = f"{fmt_recall(s['recall>=t'])} | {fmt_recall(s['recall>=t+0.05'])}"
        print(
            f"| {label} | {med[key]:.2f} | {n / med[key]:,.0f} | {ratio} | {s['removed']:,} | {recall} | "
            f"{s['precision']:.4f} |"
        )
    print("\nrecall by true Jaccard of the planted pair:")
    for lo, hi in BINS:
        key = f"recall[{lo},{hi})"
        cells = [f"{name} {fmt_recall(results[sc][key])}" for name, sc in SCORES if sc in results]
        print(f"  [{lo}, {hi}): " + "; ".join(cells))
    for name, sc in SCORES:
        if sc in results:
            s = results[sc]
            print(
                f"{name}: removed {s['removed']:,}, true J < t: {s['removed_below_t']:,}, "
                f"false positives (J < t-0.1): {s['false_pos']:,}"
            )
    if "datatrove" in med:
        stage_med = {
            k: statistics.median(rd["datatrove_stages"][k] for rd in results["rounds"])
            for k in results["rounds"][0]["datatrove_stages"]
        }
        results["datatrove_stage_median_s"] = stage_med
        print("datatrove stages (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in stage_med.items()))
        ratios = [rd["datatrove"] / rd["ours"] for rd in results["rounds"]]
        best = min(rd["datatrove"] for rd in results["rounds"]) / min(rd["ours"] for rd in results["rounds"])
        by_round = ", ".join(f"{x:.1f}" for x in ratios)
        print(f"ours / datatrove speed by round: {by_round}; best vs best {best:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
