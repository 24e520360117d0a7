"""Shared helpers for the benchmarks under ``bench/``.

Each module has one job: ``machine`` records where a number was measured,
``rawdisk`` measures the same-run disk baseline, ``rss`` samples a server's
memory, ``datagen`` makes fresh (dedupe-proof) payloads and ``results``
writes the JSON every benchmark leaves behind.
"""
