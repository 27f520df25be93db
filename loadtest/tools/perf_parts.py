#!/usr/bin/env python3
"""Shares of a node's perf samples by part of the node (BENCHMARKS.md section 4).

Reads `perf script` output of call-graph samples (perf record --call-graph dwarf) and
attributes each sample to the first part below found anywhere on its stack, in this order;
samples with none of them are "kernel and other".

    perf script -i perf.data | python3 loadtest/tools/perf_parts.py
"""
import collections
import re
import sys

PARTS = [
    ("journal commit: epoch check and multi-row flush", r"SqlJournal as actors::journal::JournalStore"),
    ("after commit: pushes and the Redis pipeline", r"node::fanout::|Hub::publish_all|node::bus::redis::send_in_order"),
    ("journal release: completions and wake-ups", r"actors::journal::Writer<.*>::release"),
    ("journal batch loop", r"actors::journal::Writer<.*>::run"),
    ("incoming Redis pushes to subscribers", r"node::bus::redis::Reader"),
    ("Redis client", r"^<?redis::"),
    ("WebSocket writer", r"node::ws::connection::write_loop"),
    ("WebSocket wallet op", r"node::ws::wallet_ops|Reader::wallet_op"),
    ("conversation op: store read of the thread", r"node::store::conversations::thread"),
    ("WebSocket conversation op", r"node::ws::message_ops|Reader::message_op"),
    ("WebSocket reader, other", r"node::ws::connection::Reader|node::ws::connection::run"),
    ("actors: mailbox and handle", r"actors::registry::EntityActor|SyncEnvelopeProxy"),
    ("registry ask", r"actors::registry::Registry<.*>::ask"),
    ("stored-reply lookups", r"node::store::idempotency"),
    ("sqlx", r"sqlx_core|sqlx_postgres|sqlx_sqlite"),
    ("actix-http dispatcher", r"actix_http::h1::dispatcher"),
]
# glibc's malloc and memmove (perf script may name memmove by its alias __memcpy), and
# jemalloc's symbols (the node binary's allocator: `_rjem_…` and its inlined fast paths).
ALLOC = re.compile(r"^(_int_malloc|_int_free|_int_realloc|malloc|free|cfree|realloc|"
                   r"malloc_consolidate|unlink_chunk|__memmove|__memcpy|_rjem_|do_rallocx|"
                   r"imalloc|ifree|free_fastpath)")


def frames_of(block):
    frames = []
    for line in block.strip().split("\n")[1:]:
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1].rsplit(" (", 1)[0])
    return frames


def main():
    shares = collections.Counter()
    samples = alloc = 0
    for block in sys.stdin.read().split("\n\n"):
        frames = frames_of(block)
        if not frames:
            continue
        samples += 1
        if ALLOC.match(frames[0]):
            alloc += 1
        part = next((name for name, rx in PARTS if any(re.search(rx, f) for f in frames)),
                    "kernel and other")
        shares[part] += 1
    if not samples:
        sys.exit("no samples read: did the scenario end before the recording began?")
    print("| share | part |\n|---:|---|")
    for part, count in shares.most_common():
        print(f"| {100 * count / samples:.1f} % | {part} |")
    print(f"\n{samples} samples; {100 * alloc / samples:.1f} % of them in the allocator or memmove")


if __name__ == "__main__":
    main()
