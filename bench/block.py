"""Block benchmark: codecs, block sizes, bytes per record, seal and scan costs.

Run from the repo root:  .venv/bin/python bench/block.py [--records N] [--rounds R]

On the store benchmark's records (~257-byte messages, 20 services, 50 hosts,
10% up to 30 s late) it prints, as medians of R rounds:
  1. message text alone through zstd (levels 1 and 3) and lz4 (fast and HC;
     skipped when the `lz4` package is not installed) at several block sizes:
     compressed bytes per record, compress and decompress MB/s;
  2. whole sealed blocks (collector/block.py) at those sizes: bytes per
     record by part, ratio to the raw message bytes, seal microseconds per
     record (and how much of it holds the GIL), decode milliseconds per block;
  3. the word filter: build time, bytes per distinct word, false positives;
     a classic Bloom filter (16 bits per word, 6 hashes) built in Python for
     comparison;
  4. a `q=` substring scan over every block, one thread and two.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import zstandard
from store import make_records

from collector.block import columns_from_records, encode_block
from collector.blockcache import BlockCache
from collector.blockrun import find_substring
from collector.wordfilter import WordFilter, message_words, word_keys

SIZES = (1024, 4096, 16384)


def median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def codecs() -> list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    out = [
        (
            "zstd-1",
            zstandard.ZstdCompressor(level=1).compress,
            zstandard.ZstdDecompressor().decompress,
        ),
        (
            "zstd-3",
            zstandard.ZstdCompressor(level=3).compress,
            zstandard.ZstdDecompressor().decompress,
        ),
    ]
    try:
        import lz4.frame
    except ImportError:
        print("(lz4 not installed: `.venv/bin/pip install lz4` to compare it)")
        return out

    def hc(d: bytes) -> bytes:
        return lz4.frame.compress(d, compression_level=9)

    out.append(("lz4", lz4.frame.compress, lz4.frame.decompress))
    out.append(("lz4-hc9", hc, lz4.frame.decompress))
    return out


def bloom_build(keys: list[int], bits_per_word: int = 16, hashes: int = 6) -> bytearray:
    """A classic Bloom filter in Python (double hashing over CRC-32 pairs)."""
    m = max(64, len(keys) * bits_per_word)
    bits = bytearray((m + 7) // 8)
    for k in keys:
        h2 = zlib.crc32(k.to_bytes(4, "little")) | 1
        for i in range(hashes):
            p = (k + i * h2) % m
            bits[p >> 3] |= 1 << (p & 7)
    return bits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n, rounds = args.records, args.rounds
    recs = make_records(n, seed=3, late_fraction=0.1)
    items = sorted(enumerate(recs), key=lambda p: (p[1].timestamp, p[0]))
    msgs = [r.message.encode() for _, r in items]
    raw = sum(map(len, msgs))
    print(f"{n} records, {raw / n:.1f} message bytes per record\n")

    print("1. message text alone")
    print(f"{'block':>6} {'codec':8} {'B/rec':>6} {'ratio':>6} {'comp MB/s':>10} {'dec MB/s':>9}")
    for size in SIZES:
        chunks = [b"".join(msgs[i : i + size]) for i in range(0, n, size)]
        for name, comp, dec in codecs():
            zs = [comp(c) for c in chunks]
            tc = median_time(lambda comp=comp, chunks=chunks: [comp(c) for c in chunks], rounds)
            td = median_time(lambda dec=dec, zs=zs: [dec(z) for z in zs], rounds)
            z = sum(map(len, zs))
            print(
                f"{size:6d} {name:8} {z / n:6.1f} {z / raw:6.3f} {raw / tc / 1e6:10.0f} {raw / td / 1e6:9.0f}"
            )

    print("\n2. sealed blocks (collector/block.py, zstd level 1)")
    print(
        f"{'block':>6} {'B/rec':>6} {'ratio':>6} {'groups':>5} {'keys':>5} {'-':>5} {'extra':>5}"
        f" {'words':>5} {'seal us/rec':>11} {'GIL-held':>8} {'dec ms/blk':>10}"
    )
    by_size = {}
    for size in SIZES:
        cols = [columns_from_records(items[i : i + size]) for i in range(0, n, size)]
        blocks = [encode_block(c) for c in cols]
        by_size[size] = blocks
        t_seal = median_time(lambda cols=cols: [encode_block(c) for c in cols], rounds)
        t_words = median_time(
            lambda cols=cols: [
                WordFilter.build(map(zlib.crc32, message_words(c.message))) for c in cols
            ],
            rounds,
        )
        t_dec = median_time(
            lambda blocks=blocks: [
                (b.decode_keys(), [b.decode_group(j) for j in range(b.ngroups)]) for b in blocks
            ],
            rounds,
        )

        def part(f: Callable[..., int], blocks: list = blocks) -> float:  # type: ignore[type-arg]
            return sum(map(f, blocks)) / n

        total = part(lambda b: b.nbytes)
        print(
            f"{size:6d} {total:6.1f} {total * n / raw:6.3f} {part(lambda b: b.frame_ends[-1] - b.frame_ends[0]):5.1f}"
            f" {part(lambda b: b.frame_ends[0]):5.1f} {0:5.1f}"
            f" {part(lambda b: len(b.extras_in)):5.1f} {part(lambda b: b.word_filter.nbytes):5.1f}"
            f" {t_seal / n * 1e6:11.2f} {t_words / n * 1e6:8.2f} {t_dec / len(blocks) * 1e3:10.2f}"
        )

    print("\n3. word filter vs a Bloom filter built in Python (20,000 distinct words)")
    rng = random.Random(7)
    present = list({"".join(rng.choices(string.ascii_lowercase, k=9)) for _ in range(20_000)})
    absent = list({"".join(rng.choices(string.ascii_lowercase, k=10)) for _ in range(100_000)})
    keys = word_keys(present)
    t_wf = median_time(lambda: WordFilter.build(keys), rounds)
    t_bloom = median_time(lambda: bloom_build(keys), rounds)
    wf = WordFilter.build(keys)
    fp = sum(wf.may_contain([k]) for k in word_keys(absent)) / len(absent)
    probe = word_keys(["nosuchword"])
    t_probe = median_time(lambda: [wf.may_contain(probe) for _ in range(10_000)], rounds) / 10_000
    print(
        f"  sorted-hash filter: build {t_wf * 1e3:.1f} ms, {wf.nbytes * 8 / len(present):.1f} bits/word,"
        f" {fp * 100:.3f}% false positives, probe {t_probe * 1e6:.2f} us"
    )
    print(f"  Bloom (16 bits/word, 6 hashes, Python loop): build {t_bloom * 1e3:.1f} ms")

    print("\n4. q= substring scan, needle in no message")
    for size in SIZES:
        blocks = by_size[size]

        def scan(b: object) -> int:
            cache = BlockCache(0)
            return len(find_substring(b, cache, "no-such-text"))  # type: ignore[arg-type]

        t1 = median_time(lambda blocks=blocks: list(map(scan, blocks)), rounds)
        with ThreadPoolExecutor(2) as pool:
            t2 = median_time(lambda blocks=blocks: list(pool.map(scan, blocks)), rounds)
        print(
            f"  {size:6d}-record blocks: 1 thread {t1 * 1e3:.0f} ms ({raw / t1 / 1e6:.0f} MB/s),"
            f" 2 threads {t2 * 1e3:.0f} ms ({raw / t2 / 1e6:.0f} MB/s)"
        )


if __name__ == "__main__":
    main()
