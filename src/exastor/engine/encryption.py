"""Encryption at rest: record payloads sealed with AES-256-GCM under the store's data keys.

Encryption sits below the reduction: a chunk is fingerprinted (BLAKE3 of the plaintext: dedupe is
unchanged), deduplicated and compressed (or delta-encoded by the reducer) first; only the payload
that would be written is encrypted. Segments, replicas and erasure-coded shards are made of records
as before, so every copy on the drives holds ciphertext, and scrub, repair, relayout, sealing and
compaction move and verify records (their xxh3 checksums cover the stored, encrypted bytes) without
a key. Only a read of a chunk's bytes decrypts. Format: docs/format.md, "Encrypted records".

An encrypted record's header names its data key (``key_id``, 0 = plaintext: records written before
encryption, or with it off); its payload is ``nonce (12) | ciphertext | tag (16)``. The associated
data is the header's identity (magic, kind, codec, flags, raw_len, fingerprint, key id): a payload
moved under another record's header, or a header edited to say another codec or length, fails the
tag. A record moved whole to another location is caught as before (the index names the
fingerprint it expects there). Location is deliberately not bound: compaction and relayout move
records without decrypting them.

Nonces never repeat under one key: a nonce is an 8-byte prefix drawn at random (os.urandom) by
each process for each key, then a 4-byte counter; under a lock the process reserves the next
counters for one record (``seal``) or for a whole PUT window's records at once (``seal_window``).
When a reservation would run past 2^32 (or in a forked child, which must not continue its parent's
counter) a fresh prefix is drawn. Two records share a nonce only if two prefixes drawn under the same key
collide: with n prefixes ever drawn under one key the chance is below n^2 / 2^65 (a million
process starts under one key: < 2^-25), where random 96-bit nonces would give records^2 / 2^97 and
a bound on records per key. Nothing is persisted for this, so restoring an old database or
journal cannot rewind a counter into reuse. ``exastor key rotate`` starts a new key whenever
wanted (docs/security.md); AES-GCM's own limit (2^64 records per key under this construction, and
confidentiality margins that call for a new key after some petabytes) is far off.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exastor import errors
from exastor.engine.record import KIND_CHUNK, MAGIC, RecordHeader
from exastor.meta import datakeys
from exastor.meta.sealing import SecretsLocked

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE   # bytes an encrypted payload adds to the stored one
PREFIX_USES = 1 << 32              # records per nonce prefix (the 4-byte counter)
REFRESH_S = 30.0                   # how stale this process's view of the newest key may get
SPARE_BUFFERS = 4                  # window-sized ciphertext buffers a process keeps for reuse (seal_window)
_BUFFER_STEP = 1 << 20             # their sizes are rounded up to this, so windows of any size reuse them
_AD = struct.Struct("<4sBBHI32sI")  # magic kind codec flags raw_len fp key_id


class KeyUnavailable(errors.Unavailable):
    """A record is encrypted under a data key this process cannot open (the master key is missing,
    or the key is not in the database): its bytes are not lost, only locked. Never DataCorrupted,
    so nothing treats locked data as damaged and repairs or reclaims it."""


def associated_data(fp: bytes, codec: int, flags: int, raw_len: int, key_id: int) -> bytes:
    return _AD.pack(MAGIC, KIND_CHUNK, codec, flags, raw_len, fp, key_id)


@dataclass
class _Nonces:
    pid: int
    prefix: bytes
    used: int


class DataKeys:
    """This process's data keys, opened from the database with the master key (``meta.sealer``).

    ``seal`` encrypts a new record's payload under the newest key when the store encrypts (else
    passes it through, key id 0); ``open`` decrypts a stored payload under the key its header names.
    A key added by ``exastor key rotate`` in another process is picked up within REFRESH_S for
    writing, and at once for reading (an unknown key id reloads the keys once)."""

    def __init__(self, meta: Any) -> None:
        self.meta = meta
        self._lock = threading.Lock()
        self._aeads: dict[int, AESGCM] = {}
        self._nonces: dict[int, _Nonces] = {}
        self._writing = 0          # key id new records are sealed under; 0 = plaintext
        self._encrypt = False      # the store says: encrypt new records
        self._all_encrypted = False
        self._why_locked = ""
        self._loaded_at = -1e18
        self._spare: list[np.ndarray] = []  # ciphertext buffers of finished windows, for the next ones
        self.load()

    def load(self) -> None:
        rows, encrypt, every = datakeys.key_state(self.meta, snapshot=False)
        aeads: dict[int, AESGCM] = {}
        why = ""
        for key_id, wrapped, _ in rows:
            try:
                aeads[key_id] = AESGCM(datakeys.unwrap(self.meta.sealer, key_id, wrapped))
            except SecretsLocked as exc:
                why = str(exc)
        with self._lock:
            self._aeads = aeads
            self._encrypt = encrypt == "1"
            self._all_encrypted = every == "1"
            self._writing = rows[-1][0] if rows and self._encrypt else 0
            self._why_locked = why
            self._loaded_at = time.monotonic()

    @property
    def any_keys(self) -> bool:
        """The store has data keys: some record may be encrypted (reads then decrypt in place)."""
        return bool(self._aeads) or bool(self._why_locked)

    @property
    def locked(self) -> str:
        """Why some data key cannot be opened (the master key is missing), or "" when all can."""
        return self._why_locked

    @property
    def encrypting(self) -> bool:
        """New records are encrypted."""
        self._maybe_refresh()
        return self._encrypt

    @property
    def all_encrypted(self) -> bool:
        """Every record this store ever wrote is encrypted (so is every object's data)."""
        self._maybe_refresh()
        return self._all_encrypted

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._loaded_at > REFRESH_S:
            self.load()

    def _reserve_nonces(self, key_id: int, count: int) -> tuple[bytes, int]:
        """(prefix, first counter) of ``count`` consecutive nonces reserved for this caller under
        ``key_id``: ``prefix + (first + i)`` for i < count, never handed out again (one lock for a
        whole window's records). A reservation never crosses the end of a prefix: a fresh prefix is
        drawn when the counter could not hold all ``count`` (some counters of the old one are then
        never used, which is harmless)."""
        assert 0 < count <= PREFIX_USES
        with self._lock:
            state = self._nonces.get(key_id)
            pid = os.getpid()
            if state is None or state.pid != pid or state.used + count > PREFIX_USES:
                state = self._nonces[key_id] = _Nonces(pid, os.urandom(NONCE_SIZE - 4), 0)
            first = state.used
            state.used += count
        return state.prefix, first

    def _writing_key(self) -> tuple[int, AESGCM | None]:
        """(key id, cipher) new records are sealed under; (0, None) when the store does not encrypt.
        Refuses (KeyUnavailable) to write plaintext into a store that encrypts when the key cannot
        be opened."""
        self._maybe_refresh()
        if not self._encrypt:
            return 0, None
        key_id = self._writing
        aead = self._aeads.get(key_id)
        if aead is None:
            raise KeyUnavailable(f"this store encrypts at rest and data key {key_id} cannot be opened: "
                                 f"{self._why_locked or 'no data key'}")
        return key_id, aead

    def seal(self, fp: bytes, codec: int, flags: int, raw_len: int,
             payload: bytes | bytearray | memoryview) -> tuple[int, bytes | bytearray | memoryview]:
        """(key id, stored payload) of one new record: encrypted under the newest key when the store
        encrypts (into a buffer of its own), else (0, ``payload``). The write path seals a window's
        records at once (``seal_window``); this is for single records (the reducer)."""
        key_id, aead = self._writing_key()
        if aead is None:
            return 0, payload
        out = _uninitialised(len(payload) + OVERHEAD)
        _seal_into(aead, self._reserve_nonces(key_id, 1), 0, key_id, fp, codec, flags, raw_len, payload, out)
        return key_id, out

    @contextmanager
    def seal_window(self, records: Sequence[tuple[bytes, int, int, int, bytes | memoryview]]
                    ) -> Iterator[tuple[int, list[bytes | memoryview]]]:
        """(key id, stored payloads) of a window's new records, each given as (fingerprint, codec,
        flags, raw_len, payload): encrypted under the newest key when the store encrypts, else
        (0, the payloads as they are). The encrypted payloads lie back to back in one buffer that
        is reused by later windows: **they are valid only inside the ``with`` block** (write them,
        keep nothing). Why one reused buffer, not one per record (docs/benchmarks.md, "Encryption
        at rest"): a fresh heap buffer per record, freed after the window's write, was given back
        to the kernel by the gateway's heap trimmer (gateway/memory.py) and faulted in again, and
        was cold in the cache when the cipher wrote it; with the per-record bookkeeping that doubled
        the cost of encrypting on a PUT. One nonce reservation and one key look-up per window, too."""
        key_id, aead = self._writing_key()
        if aead is None or not records:
            yield 0, [payload for *_, payload in records]
            return
        need = sum(len(payload) for *_, payload in records) + OVERHEAD * len(records)
        buf = self._take_buffer(need)
        try:
            view = memoryview(buf.data)
            nonces = self._reserve_nonces(key_id, len(records))
            stored: list[bytes | memoryview] = []
            pos = 0
            for i, (fp, codec, flags, raw_len, payload) in enumerate(records):
                out = view[pos:pos + len(payload) + OVERHEAD]
                _seal_into(aead, nonces, i, key_id, fp, codec, flags, raw_len, payload, out)
                stored.append(out)
                pos += len(out)
            yield key_id, stored
        finally:
            self._give_back(buf)

    def _take_buffer(self, need: int) -> np.ndarray:
        """The smallest spare buffer that holds ``need`` bytes, or a new one (uninitialised: see
        ``_uninitialised``) with a quarter more room: a PUT's later windows are a little larger
        than its first (the chunk carried over, the last piece received), and should fit the same
        buffer. The room costs no memory until written: a buffer this size is its own mmap (the
        gateway's 1 MiB threshold, gateway/memory.py), whose pages exist once touched."""
        with self._lock:
            fits = [buf for buf in self._spare if len(buf) >= need]
            if fits:
                best = min(fits, key=len)
                # By identity: list.remove compares arrays with ==, element-wise (ValueError when
                # their shapes differ or the truth of the result is ambiguous).
                self._spare = [buf for buf in self._spare if buf is not best]
                return best
        return np.empty(-(-(need + need // 4) // _BUFFER_STEP) * _BUFFER_STEP, np.uint8)

    def _give_back(self, buf: np.ndarray) -> None:
        """Keep at most SPARE_BUFFERS, the largest (they fit every window): bounded memory
        (about SPARE_BUFFERS x 5 MiB per process) that the heap trimmer never hands back."""
        with self._lock:
            self._spare.append(buf)
            if len(self._spare) > SPARE_BUFFERS:
                smallest = min(self._spare, key=len)
                self._spare = [spare for spare in self._spare if spare is not smallest]

    def open(self, head: RecordHeader, payload: bytes | memoryview) -> bytes | memoryview:
        """The plaintext payload of a verified record (as is when it is plaintext). DataCorrupted when
        the tag fails (damaged, or moved under another header); KeyUnavailable without the key.
        A writable ``payload`` is decrypted in place (its bytes are then the plaintext, or garbage
        after a failed tag: the caller reads the record again)."""
        if head.key_id == 0:
            return payload
        aead = self._aeads.get(head.key_id)
        if aead is None:
            self.load()  # a key made since (exastor key rotate in another process)?
            aead = self._aeads.get(head.key_id)
            if aead is None:
                raise KeyUnavailable(f"a record is encrypted under data key {head.key_id}, which this process "
                                     f"cannot open: {self._why_locked or 'no such key in the database'}")
        if len(payload) < OVERHEAD:
            raise errors.DataCorrupted("encrypted payload shorter than its nonce and tag")
        view = memoryview(payload)
        # Where the caller's buffer is its own to change (engine/chunkstore.py reads runs of records into
        # one), the plaintext replaces the ciphertext where it lies: no second buffer, no second pass
        # over fresh memory. AES-GCM (OpenSSL) decrypts in place when input and output start together.
        out = view[NONCE_SIZE:len(view) - TAG_SIZE] if not view.readonly else _uninitialised(len(view) - OVERHEAD)
        try:
            aead.decrypt_into(view[:NONCE_SIZE], view[NONCE_SIZE:],
                              associated_data(head.fp, head.codec, head.flags, head.raw_len, head.key_id), out)
        except InvalidTag as exc:
            raise errors.DataCorrupted("encrypted record fails its authentication tag") from exc
        return out


def _seal_into(aead: AESGCM, nonces: tuple[bytes, int], index: int, key_id: int, fp: bytes, codec: int,
               flags: int, raw_len: int, payload: bytes | bytearray | memoryview, out: memoryview) -> None:
    """Write ``nonce | ciphertext | tag`` of ``payload`` into ``out`` (exactly OVERHEAD bytes longer),
    under the ``index``-th nonce of the reservation ``nonces`` (DataKeys._reserve_nonces)."""
    prefix, first = nonces
    nonce = prefix + (first + index).to_bytes(4, "big")
    out[:NONCE_SIZE] = nonce
    aead.encrypt_into(nonce, payload, associated_data(fp, codec, flags, raw_len, key_id), out[NONCE_SIZE:])


def _uninitialised(size: int) -> memoryview:
    """A writable buffer for AES-GCM to fill. Not zeroed first: ``aead.encrypt``/``decrypt`` and a
    ``bytearray`` both write every byte twice (zeros, then the result), and on a GET the second pass
    over fresh memory cost 0.05 CPU-s/GiB, a quarter of the decryption itself (docs/benchmarks.md,
    "Encryption at rest"). Every byte is written by the cipher before anyone reads it; on a failed
    tag the buffer is dropped unread."""
    return memoryview(np.empty(size, np.uint8).data)  # an ndarray's .data is its buffer


def of(meta: Any) -> DataKeys:
    """The data keys of the store behind ``meta``, opened once per Metadata (and process)."""
    keys = meta.data_keys
    if keys is None:
        keys = meta.data_keys = DataKeys(meta)
    return keys
