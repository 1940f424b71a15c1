"""Data throughput: procedural generation, then tokenize + shard, ours against datatrove's DocumentTokenizer.

Run: .venv/bin/python bench/data_throughput.py [--docs N] [--vocab V] [--repeats R]

Both tokenize paths get the same documents and the same tokenizer.json and write `.ds` shards
(datatrove with document shuffling off); the bench checks the outputs are byte-identical and reports
the best of R timed rounds of each (wall time, and CPU time over all threads), alternating which goes
first. The headline ratio is the median over rounds of the two paths' times within a round, which
cancels most of the drift when other jobs share the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pretrainlab.exercises.biographies import Biographies
from pretrainlab.tokenize.loader import TokenLoader
from pretrainlab.tokenize.shards import ShardWriter, read_shard
from pretrainlab.tokenize.tokenizer import EOS, encode_batch, load_tokenizer, save_tokenizer, train_bpe

BATCH = 10_000  # documents per encode_batch call, datatrove's default


def ours(texts: list[str], tok_path: Path, out: Path) -> list[Path]:
    """Our path: encode in batches, append to a ShardWriter."""
    tok = load_tokenizer(tok_path)
    with ShardWriter(out, tok.get_vocab_size(), str(tok_path)) as writer:
        for start in range(0, len(texts), BATCH):
            for ids in encode_batch(tok, texts[start : start + BATCH]):
                writer.add(ids)
    return sorted(out.glob("*.ds"))


def datatrove(docs: list, tok_path: Path, out: Path) -> list[Path]:
    """datatrove's DocumentTokenizer step run in-process on a list of Documents, no shuffling."""
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    step = DocumentTokenizer(
        output_folder=str(out),
        tokenizer_name_or_path=str(tok_path),
        eos_token=EOS,
        save_filename="dt",
        shuffle_documents=False,
        batch_size=BATCH,
    )
    step.run(iter(docs), rank=0, world_size=1)
    return sorted(out.glob("*.ds"))


def timed(fn: Callable[[Path], list[Path]], out: Path) -> tuple[float, float, list[Path]]:
    """Run `fn` into a fresh folder `out`: its wall time, its CPU time (all threads) and its shards."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    wall, cpu = time.perf_counter(), time.process_time()
    paths = fn(out)
    return time.perf_counter() - wall, time.process_time() - cpu, paths


def file_bytes(paths: list[Path]) -> list[bytes]:
    return [Path(str(p) + ext).read_bytes() for p in paths for ext in ("", ".index", ".metadata")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--docs", type=int, default=50_000, help="biographies to generate (5 per person)")
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size")
    ap.add_argument("--tokenizer-docs", type=int, default=20_000, help="documents the BPE is trained on")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds of both tokenize paths")
    args = ap.parse_args()

    from datatrove.data import Document
    from datatrove.utils.logging import logger

    logger.disable("datatrove")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    # (a) procedural generation
    params = Biographies.Params(
        people=max(1, args.docs // 5), multiplicity=5, permute=True, fullname=False, qa=False
    )
    t = time.perf_counter()
    texts = [d.text for d in Biographies(params, seed=0).documents()]
    gen_s = time.perf_counter() - t
    mb = sum(len(x.encode("utf-8")) for x in texts) / 1e6
    print(
        f"generation: {len(texts):,} docs, {mb:.1f} MB in {gen_s:.2f} s: "
        f"{mb / gen_s:.1f} MB/s, {len(texts) / gen_s:,.0f} docs/s"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok_path = root / "tokenizer.json"
        t = time.perf_counter()
        save_tokenizer(train_bpe(texts[: args.tokenizer_docs], args.vocab), tok_path)
        print(
            f"BPE training: {min(len(texts), args.tokenizer_docs):,} docs, vocab {args.vocab} "
            f"in {time.perf_counter() - t:.2f} s"
        )

        # (b) tokenize + shard, ours vs datatrove, same corpus and tokenizer
        docs = [Document(text=x, id=str(i)) for i, x in enumerate(texts)]
        paths: dict[str, Callable[[Path], list[Path]]] = {
            "ours": lambda out: ours(texts, tok_path, out),
            "datatrove": lambda out: datatrove(docs, tok_path, out),
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        outputs: dict[str, list[Path]] = {}
        for r in range(args.repeats):
            for name in sorted(paths, reverse=r % 2 == 1):
                wall, cpu, outputs[name] = timed(paths[name], root / name)
                runs[name].append((wall, cpu))
        tokens = sum(len(read_shard(p)) for p in outputs["ours"])
        identical = file_bytes(outputs["ours"]) == file_bytes(outputs["datatrove"])
        wall_rate = {name: tokens / min(w for w, _ in times) for name, times in runs.items()}
        cpu_rate = {name: tokens / min(c for _, c in times) for name, times in runs.items()}
        for name, times in runs.items():
            print(
                f"tokenize+shard {name:>9}: {tokens:,} tokens; wall s {[round(w, 2) for w, _ in times]}, "
                f"CPU s {[round(c, 2) for _, c in times]}; best {wall_rate[name] / 1e6:.2f} M tokens/s, "
                f"{cpu_rate[name] / 1e6:.2f} M tokens/CPU-s"
            )
        per_round = [d[0] / o[0] for o, d in zip(runs["ours"], runs["datatrove"], strict=True)]
        best_wall = wall_rate["ours"] / wall_rate["datatrove"]
        best_cpu = cpu_rate["ours"] / cpu_rate["datatrove"]
        print(
            f"ratio ours/datatrove: median of rounds {statistics.median(per_round):.2f}x "
            f"(rounds {[round(x, 2) for x in per_round]}); best-of {best_wall:.2f}x wall, "
            f"{best_cpu:.2f}x CPU; outputs byte-identical: {identical}"
        )

        # the loader over those shards: random-access batches of 64 x 128
        loader = TokenLoader(outputs["ours"], seq_len=128, batch_size=64, seed=0)
        steps = 500
        t = time.perf_counter()
        for step in range(steps):
            loader.batch(step)
        seconds = time.perf_counter() - t
        print(
            f"loader: {steps} shuffled batches of 64x128 in {seconds:.2f} s: "
            f"{steps * loader.tokens_per_step / seconds / 1e6:.1f} M tokens/s"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
