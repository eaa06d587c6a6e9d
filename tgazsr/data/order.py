"""Which samples a capped evaluation scores: the stored order, or the order CLIP_benchmark met them.

The FARE report ran CLIP_benchmark with ``--n_samples 1000 --batch_size 50`` on its webdataset
copies (chs20/RobustVLM ``CLIP_benchmark/clip_benchmark/cli.py``). With ``n_samples`` set, that
CLI wraps the webdataset stream in a shuffle buffer (``shuffle(10000, initial=10000,
rng=random.Random(seed))``, seed 0) and reads it through a ``DataLoader`` with 4 workers
(its ``--num_workers`` default) over batches of 50, and scores the first 1,000 samples that come
out. Everything in that chain is deterministic, so the 1,000 images can be named exactly:

- the shards ``0.tar .. (n-1).tar`` are read in that order, without shard shuffling; worker ``w``
  of ``W`` reads shards ``w, w+W, ...`` (webdataset 0.2.48's ``split_by_worker``);
- each worker holds its own copy of the seeded ``random.Random`` (the dataset is pickled into the
  worker processes) and shuffles its own stream with webdataset's buffer: while the buffer is below
  its size it takes two samples per step, and once it holds ``initial`` samples every step emits
  one sample drawn uniformly from the buffer (the drawn slot is refilled with the buffer's last
  sample); at the end of the stream the rest is drawn the same way;
- each worker cuts its stream into batches (the last one may be short) and the ``DataLoader``
  returns one batch per worker in turn, skipping workers that have finished.

``clip_benchmark_order`` reproduces this on sample indices. ``tests/test_sample_order.py`` checks
it against webdataset 0.2.48 and torch's ``DataLoader`` on real shards.
"""

from __future__ import annotations

import os
import random
import re
from typing import Iterator, Sequence

SAMPLE_ORDERS = ("stored", "clip_benchmark")

#: CLIP_benchmark's settings as the FARE report ran them (cli.py defaults and run_benchmark_adv.sh).
CLIP_BENCHMARK_SHUFFLE = {"buffer": 10_000, "initial": 10_000, "workers": 4, "batch": 50}

_SHARD_NUMBER = re.compile(r"(\d+)\.tar$")


def _draw(buffer: list, rng: random.Random):
    """Remove and return a uniformly drawn element; the last element takes its slot."""
    k = rng.randint(0, len(buffer) - 1)
    drawn = buffer[k]
    buffer[k] = buffer[-1]
    buffer.pop()
    return drawn


def buffer_shuffle(items: Sequence[int], rng: random.Random, size: int, initial: int) -> Iterator[int]:
    """webdataset's shuffle buffer, step for step (see the module docstring)."""
    initial = min(initial, size)
    stream = iter(items)
    buffer: list[int] = []
    end = object()
    for item in stream:
        buffer.append(item)
        if len(buffer) < size:
            extra = next(stream, end)
            if extra is not end:
                buffer.append(extra)
        if len(buffer) >= initial:
            yield _draw(buffer, rng)
    while buffer:
        yield _draw(buffer, rng)


def clip_benchmark_order(shards: Sequence[Sequence[int]], seed: int = 0, buffer: int = 10_000,
                         initial: int = 10_000, workers: int = 4, batch: int = 50) -> list[int]:
    """Every sample index, in the order CLIP_benchmark's shuffled webdataset loader yields them.

    ``shards``: the sample indices of each shard, shards in their numeric order (``0.tar`` first)
    and samples in their order inside the shard."""
    per_worker = []
    for w in range(max(1, workers)):
        stream = [i for shard in shards[w::max(1, workers)] for i in shard]
        shuffled = list(buffer_shuffle(stream, random.Random(seed), buffer, initial))
        per_worker.append([shuffled[j:j + batch] for j in range(0, len(shuffled), batch)])
    order: list[int] = []
    for round_ in range(max((len(b) for b in per_worker), default=0)):
        for batches in per_worker:
            if round_ < len(batches):
                order.extend(batches[round_])
    return order


def shards_of(urls: Sequence[str]) -> list[list[int]]:
    """Dataset indices grouped by the webdataset shard they came from (the ``__url__`` column of a
    ``datasets`` webdataset), shards sorted by their number: ``datasets`` lists ``10.tar`` before
    ``2.tar``, CLIP_benchmark reads ``2.tar`` first."""
    groups: dict[str, list[int]] = {}
    for i, url in enumerate(urls):
        groups.setdefault(url, []).append(i)

    def number(url: str) -> int:
        found = _SHARD_NUMBER.search(os.path.basename(str(url)))
        if not found:
            raise ValueError(f"Cannot tell the shard number of {url!r}: CLIP_benchmark's shards are named "
                             "0.tar, 1.tar, ... Use --sample_order stored for other webdatasets.")
        return int(found.group(1))

    return [groups[url] for url in sorted(groups, key=number)]


def select_samples(dataset, order: str, max_samples: int | None, seed: int = 0) -> tuple[object, str]:
    """The samples to score and a line saying which they are.

    ``stored``: the first ``max_samples`` in the data's order. ``clip_benchmark``: the first
    ``max_samples`` of CLIP_benchmark's shuffled stream over the data's webdataset shards (a
    dataset that is not a webdataset counts as one shard in its stored order)."""
    if order not in SAMPLE_ORDERS:
        raise ValueError(f"Unknown sample order {order!r}; choose one of {', '.join(SAMPLE_ORDERS)}.")
    n = len(dataset)
    if max_samples is None or max_samples >= n:
        return dataset, f"all {n} samples"
    if order == "stored":
        return dataset.select(range(max_samples)), f"the first {max_samples} of {n} samples in stored order"
    if "__url__" in dataset.column_names:
        shards = shards_of(dataset["__url__"])
        where = f"{len(shards)} webdataset shard(s)"
    else:
        shards = [list(range(n))]
        where = "one shard (not a webdataset: stored order)"
    indices = clip_benchmark_order(shards, seed=seed, **CLIP_BENCHMARK_SHUFFLE)[:max_samples]
    return dataset.select(indices), (f"{max_samples} of {n} samples in CLIP_benchmark's shuffled order "
                                     f"(seed {seed}, {where})")
