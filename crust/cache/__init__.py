"""The shared step cache: store entries on S3, compressed, signed, published atomically.

    config   where the cache is and which keys sign and are trusted (options, cache.toml)
    keys     Ed25519 signing keys: keygen, load, sign, verify
    archive  an entry as a zstd-compressed PAX tar stream, and back into a directory
    s3       the S3 calls: a client, a streamed multipart upload, a conditional put
    remote   S3Cache: fetch a missing step, push a built one (the executor's RemoteCache)

The executor sees only the RemoteCache protocol below: fetch before running a missing step,
push after building one. A refused entry (unsigned, signed by a key not trusted, content not
matching its signed digest) is a one-line warning, and the step is built here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from crust.build.store import Entry, Store

Say = Callable[[str], None]  # one line about the step, shown beside its progress


class RemoteCache(Protocol):
    def peek(self, kind: str, step_id: str) -> dict[str, Any] | None:
        """The signed, trusted manifest of a step in the cache (its "meta": the step's record,
        "canonical": the id the steps after it are planned from, "size"), or None."""
        ...

    def fetch(self, store: Store, kind: str, step_id: str, say: Say) -> Entry | None:
        """The step's entry, fetched, verified and published into the store; None if the cache
        has no usable entry (after saying why, when one was there and refused)."""
        ...

    def push(self, entry: Entry, say: Say, same_as: str | None = None) -> None:
        """Publish an entry the cache lacks (when this builder has a signing key), with the id of
        the step whose output it equals (early cut-off: crust/build/equivalence.py), so fetching
        builders plan the steps after it alike; a failure is a warning."""
        ...
