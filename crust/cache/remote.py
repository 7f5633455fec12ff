"""S3Cache: the shared step cache on S3 (the executor's RemoteCache).

Under s3://BUCKET/PREFIX:

    blobs/KIND-ID/NONCE.tar.zst   the entry (crust/cache/archive.py), uploaded multipart: it
                                  exists only once whole; NONCE is the pushing builder's own
    steps/KIND-ID.json            the signed manifest, written last and only if absent
                                  (If-None-Match: *): the entry is published by this one put

The manifest is {"manifest": {format, kind, step_id, blob, sha256, size, canonical, created}, "key": KEY-ID,
"signature": Ed25519 over the manifest's canonical JSON}. Two builders pushing the same step
both upload their blob; one manifest put wins, the other deletes its blob. A push killed at any
point leaves no manifest, so nothing is visible (at most an unfinished multipart upload or a
blob no manifest names). A fetch uses an entry only if a trusted key signed a manifest for
exactly this kind and id and the blob's sha256 and size are the signed ones (checked before
anything is unpacked); else it warns in one line and the step is built here. The unpacked
files are not hashed again: they are a function of the signed bytes (unpack_entry refuses
anything but plain members below the entry), and re-hashing an image entry's sparse disk
(1.1 GB apparent for wsgi) cost 2.4 s of a 7.6 s fetch-only build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from crust.build.gc import human
from crust.build.layers import STARTS_FROM, share_files
from crust.build.sharing import adopt_equivalence, is_digest
from crust.build.store import Entry, Store
from crust.cache import Say, s3
from crust.cache.archive import BadArchive, pack_entry, unpack_entry
from crust.cache.config import CacheConfig
from crust.cache.keys import BadSignature, Signer, TrustedKey, load_signer, load_trusted, verify
from crust.errors import Problem

FORMAT = 1


class Refused(Exception):
    """An entry of the cache this builder must not use (the message says why)."""


def canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


class S3Cache:
    def __init__(self, config: CacheConfig, client: Any, signer: Signer | None, trusted: dict[str, TrustedKey]) -> None:
        self.config = config
        self.client = client
        self.signer = signer
        self.trusted = trusted
        self.peeked: dict[str, dict[str, Any] | None] = {}

    def marker_key(self, kind: str, step_id: str) -> str:
        return self.config.key_of(f"steps/{kind}-{step_id}.json")

    def blob_prefix(self, kind: str, step_id: str) -> str:
        return self.config.key_of(f"blobs/{kind}-{step_id}/")

    def push(self, entry: Entry, say: Say, same_as: str | None = None) -> None:
        if self.signer is None:
            return
        bucket, marker = self.config.bucket, self.marker_key(entry.kind, entry.id)
        try:
            if s3.get_small(self.client, bucket, marker) is not None:
                return
            blob = f"{self.blob_prefix(entry.kind, entry.id)}{uuid.uuid4().hex}.tar.zst"
            uploaded = s3.upload_stream(self.client, bucket, blob, lambda out: pack_entry(entry.path, out))
            manifest = {
                "format": FORMAT,
                "kind": entry.kind,
                "step_id": entry.id,
                "blob": blob,
                "sha256": uploaded.sha256,
                "size": uploaded.size,
                "canonical": same_as or entry.id,
                "meta": entry.meta,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            envelope = {"manifest": manifest, "key": self.signer.key_id, "signature": self.signer.sign(canonical(manifest))}
            if s3.put_if_absent(self.client, bucket, marker, json.dumps(envelope, indent=1, sort_keys=True).encode("utf-8")):
                say(f"pushed to the shared cache ({human(uploaded.size)})")
            else:
                s3.delete(self.client, bucket, blob)
                say("already in the shared cache (another builder pushed it first)")
        except Exception as exc:  # a push is best effort: the step is built and in the store whatever happens here
            say(f"warning: not pushed to the shared cache: {one_line(exc)}")

    def push_record(self, appliance: str, record: dict[str, Any]) -> None:
        """The record of a build (its steps) under builds/APPLIANCE/, for `cache prune --keep N`;
        only builders that push write them. A failure is left to the caller to report."""
        if self.signer is None:
            return
        key = self.config.key_of(f"builds/{appliance}/{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json")
        steps = [{"kind": s["kind"], "id": s["id"]} for s in record.get("steps", [])]
        body = json.dumps({"appliance": appliance, "build_id": record.get("build_id"), "finished": record.get("finished"), "steps": steps}, indent=1)
        s3.put_if_absent(self.client, self.config.bucket, key, body.encode("utf-8"))

    def peek(self, kind: str, step_id: str) -> dict[str, Any] | None:
        """The signed manifest of a step the cache has and this builder trusts, else None; one
        small GET per step and build, remembered (ids are content addresses). Nothing is said:
        a refused entry is reported when it is fetched."""
        key = f"{kind}-{step_id}"
        if key not in self.peeked:
            try:
                raw = s3.get_small(self.client, self.config.bucket, self.marker_key(kind, step_id))
                self.peeked[key] = None if raw is None else self.check_manifest(raw, kind, step_id)
            except (Refused, Problem, OSError):
                self.peeked[key] = None
        return self.peeked[key]

    def fetch(self, store: Store, kind: str, step_id: str, say: Say) -> Entry | None:
        try:
            manifest = self.peeked.get(f"{kind}-{step_id}")  # checked already when planning asked
            if manifest is None:  # not asked, absent or refused: read it (again) to say why
                raw = s3.get_small(self.client, self.config.bucket, self.marker_key(kind, step_id))
                if raw is None:
                    return None
                manifest = self.check_manifest(raw, kind, step_id)
            entry = self.fetch_blob(store, kind, step_id, manifest)
        except Refused as exc:
            say(f"warning: shared cache entry {kind}-{step_id[:12]} refused: {exc}; building it here")
            return None
        except (Problem, OSError) as exc:
            say(f"warning: shared cache entry {kind}-{step_id[:12]} not fetched: {one_line(exc)}; building it here")
            return None
        say(f"fetched from the shared cache ({human(int(manifest['size']))}, signed by {manifest['signed_by']})")
        return entry

    def check_manifest(self, raw: bytes, kind: str, step_id: str) -> dict[str, Any]:
        """The manifest, if a trusted key signed it and it is this step's."""
        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = None
        manifest = envelope.get("manifest") if isinstance(envelope, dict) else None
        if not isinstance(envelope, dict) or not isinstance(manifest, dict):
            raise Refused("not a Crust cache manifest")
        if not envelope.get("signature"):
            raise Refused("unsigned")
        try:
            verify(self.trusted, str(envelope.get("key", "")), str(envelope["signature"]), canonical(manifest))
        except BadSignature as exc:
            raise Refused(str(exc)) from None
        if manifest.get("format") != FORMAT or manifest.get("kind") != kind or manifest.get("step_id") != step_id:
            raise Refused(f"its signed manifest is for {manifest.get('kind')}-{str(manifest.get('step_id'))[:12]} (format {manifest.get('format')})")
        blob, digest, size = manifest.get("blob"), manifest.get("sha256"), manifest.get("size")
        if not isinstance(blob, str) or not blob.startswith(self.blob_prefix(kind, step_id)):
            raise Refused("its signed manifest names a blob of another step")
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(size, int) or isinstance(size, bool):
            raise Refused("its signed manifest has no sha256 or size")
        meta, canonical_id = manifest.get("meta", {}), manifest.get("canonical", step_id)
        if not isinstance(meta, dict) or not isinstance(canonical_id, str) or not is_digest(canonical_id):
            raise Refused("its signed manifest's record or canonical id is malformed")
        check_output_digest(meta)
        return {**manifest, "signed_by": str(envelope["key"])}

    def fetch_blob(self, store: Store, kind: str, step_id: str, manifest: dict[str, Any]) -> Entry:
        """Download, check the digest, unpack, check the output, publish into the store."""
        blob = store.root / "tmp" / f"cache-{kind}-{step_id}.blob.{os.getpid()}"  # a killed run's: removed by remove_stale_tmp
        try:
            s3.download(self.client, self.config.bucket, str(manifest["blob"]), blob)
            size, digest = blob.stat().st_size, sha256_file(blob)
            if digest != manifest["sha256"] or size != manifest["size"]:
                raise Refused(f"its content does not match its signed digest (sha256 {digest[:12]}, signed {str(manifest['sha256'])[:12]})")
            with store.building(kind, step_id) as tmp:
                with open(blob, "rb") as fh:
                    try:
                        unpack_entry(fh, tmp)
                    except BadArchive as exc:
                        raise Refused(f"its archive: {exc}") from None
                blob.unlink()
                meta = read_meta(tmp, kind, step_id)
                started_from = STARTS_FROM.get(kind)
                parent = store.get(started_from, str(meta.get("inputs", {}).get(started_from))) if started_from else None
                if parent is not None:  # stored as a built one is: its unchanged files linked to the earlier entry's
                    share_files(tmp / "tree", parent.path / "tree")
                entry = store.commit(kind, step_id, tmp, meta)
            if meta.get("output_digest"):
                adopt_equivalence(store.root / "state", kind, step_id, str(meta["output_digest"]), str(manifest.get("canonical") or step_id))
        finally:
            blob.unlink(missing_ok=True)
        store.log_path(kind, step_id).write_text(
            f"# fetched from the shared cache {self.config.url}: {manifest['blob']} (sha256 {manifest['sha256']}, created {manifest.get('created')})\n",
            encoding="utf-8",
        )
        return entry

    def sizes(self) -> dict[str, int]:
        """KIND-ID -> compressed size of each published entry (two listings, nothing verified)."""
        published = {
            item.key.rsplit("/", 1)[-1].removesuffix(".json")
            for item in s3.list_objects(self.client, self.config.bucket, self.config.key_of("steps/"))
            if item.key.endswith(".json")
        }
        sizes: dict[str, int] = {}
        for item in s3.list_objects(self.client, self.config.bucket, self.config.key_of("blobs/")):
            name = item.key.rsplit("/", 2)[-2]
            if name in published:
                sizes[name] = max(item.size, sizes.get(name, 0))
        return sizes


def read_meta(tmp: Path, kind: str, step_id: str) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((tmp / "step.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise Refused("its archive has no readable step.json") from None
    if meta.get("kind") != kind or meta.get("id") != step_id:
        raise Refused(f"its step.json is {meta.get('kind')}-{str(meta.get('id'))[:12]}'s")
    check_output_digest(meta)
    return meta


def check_output_digest(meta: dict[str, Any]) -> None:
    """A step's recorded output digest names a file of the store's state (early cut-off): only
    a sha256 in hex may, never a path."""
    made = meta.get("output_digest")
    if made is not None and not (isinstance(made, str) and is_digest(made)):
        raise Refused("its record's output digest is not a sha256")


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def one_line(exc: BaseException) -> str:
    text = exc.one_line() if isinstance(exc, Problem) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.splitlines())


def open_cache(config: CacheConfig) -> S3Cache:
    """The cache of a config: its keys loaded (bad key files are user errors now), its client."""
    signer = load_signer(config.signing_key) if config.signing_key is not None else None
    trusted = {key.key_id: key for key in (load_trusted(p) for p in config.trusted)}
    if signer is not None:
        public = signer.private.public_key()
        trusted.setdefault(signer.key_id, TrustedKey(signer.key_id, public))
    return S3Cache(config, s3.make_client(config), signer, trusted)
