"""Run build plans: each missing step is built into the store (under its lock), then the
artifacts and the manifest are published. Kinds of steps come from crust/steps/."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crust import __version__
from crust.build.diskfull import disk_full
from crust.build.equivalence import canonical_id, digest_output, record_output
from crust.build.layers import STARTS_FROM, share_files
from crust.build.manifest import Artifact, Manifest
from crust.build.plan import AppliancePlan, Step, plan_appliance
from crust.build.progress import Progress
from crust.build.publish import publish
from crust.build.sharing import adopt_equivalence, forget_equivalence
from crust.build.store import Entry, Store, remove_tree
from crust.define.project import Project
from crust.errors import CommandError, DiskFull, StepFailed
from crust.log import logging_to, phase
from crust.runner import step_env
from crust.tree.reproducible import clamp_times

if TYPE_CHECKING:
    from crust.cache import RemoteCache


@dataclass(frozen=True)
class Built:
    entry: Entry
    cached: bool
    fetched: bool = False  # from the shared cache: not built here, but new to this store
    canonical: str = ""  # the id the steps after it are planned from (early cut-off)


@dataclass(frozen=True)
class RemoteEntry(Entry):
    """A step in the shared cache that this build needs only the record of (its step.json, from
    the signed manifest), not the files: no step that reads them runs here (unless a later
    fetch fails: build_appliance's materialize then obtains it). Its path is where the store
    would hold it; nothing is there."""

    remote_meta: dict[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        return self.remote_meta


def ensure(store: Store, step: Step, action: Callable[[Path], dict[str, Any]], progress: Progress, remote: RemoteCache | None = None) -> Built:
    """The step's store entry: reused when present, else fetched from the shared cache, else
    built (under the step's lock). Its output is then matched against the earlier steps of its
    kind (early cut-off), and an entry this builder has but the shared cache lacks is pushed
    with that equivalence (the lock released: a build waiting for the step need not wait for
    the upload), so a builder fetching it plans the steps after it as this one does."""
    built = obtain(store, step, action, progress, remote)
    made = str(built.entry.meta.get("output_digest") or "")
    state = store.root / "state"
    fresh = not built.cached or built.fetched
    canonical = record_output(state, step.kind, step.id, made) if made and fresh else canonical_id(state, step.kind, step.id)
    if remote is not None and not built.fetched:
        remote.push(built.entry, lambda text: progress.say(step, text), canonical)
    return Built(built.entry, built.cached, built.fetched, canonical)


def hashed_files(tmp: Path, outputs: Mapping[str, Any]) -> dict[str, str]:
    """The files of a step's directory whose sha256 its outputs record (file_facts: disk.raw,
    a converted image), if still of the recorded size: the output digest need not read them again."""
    known = {}
    for name, facts in outputs.items():
        if isinstance(facts, Mapping) and isinstance(facts.get("sha256"), str) and "/" not in name:
            path = tmp / name
            if path.is_file() and not path.is_symlink() and path.stat().st_size == facts.get("size"):
                known[name] = facts["sha256"]
    return known


def obtain(store: Store, step: Step, action: Callable[[Path], dict[str, Any]], progress: Progress, remote: RemoteCache | None) -> Built:
    entry = store.get(step.kind, step.id)
    if entry is not None:
        progress.say(step, f"up to date ({step.id[:12]})")
        return Built(entry, True)
    with store.lock(step.id, on_wait=lambda: progress.say(step, "waiting: another build is making this step")):
        entry = store.get(step.kind, step.id)
        if entry is not None:
            progress.say(step, f"built by another build ({step.id[:12]})")
            return Built(entry, True)
        entry = remote.fetch(store, step.kind, step.id, lambda text: progress.say(step, text)) if remote is not None else None
        if entry is not None:
            return Built(entry, True, fetched=True)
        log_path = store.log_path(step.kind, step.id)
        progress.running(step, log_path)
        started = time.monotonic()
        try:
            with open(log_path, "w", encoding="utf-8") as log, logging_to(log), store.building(step.kind, step.id) as tmp:
                try:
                    outputs = action(tmp)
                    with phase("output digest", outputs.setdefault("phases_s", [])):
                        output = digest_output(tmp, hashed_files(tmp, outputs))  # before step.json is written: what the step made
                    duration = time.monotonic() - started
                    meta = {
                        "kind": step.kind,
                        "name": step.name,
                        "id": step.id,
                        "inputs": dict(step.inputs),
                        "explain": dict(step.explain),
                        "duration_s": round(duration, 2),
                        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "crust_version": __version__,
                        "outputs": outputs,
                        "output_digest": output,
                    }
                    entry = store.commit(step.kind, step.id, tmp, meta)
                except (CommandError, OSError) as exc:
                    progress.finished(step, f"FAILED after {time.monotonic() - started:.1f}s")
                    full = disk_full(exc, tmp, f"{step.kind} step of {step.name}")
                    if full is not None:
                        raise full from exc
                    if isinstance(exc, CommandError):
                        raise StepFailed(f"{step.kind} step of {step.name} failed: {exc}") from exc
                    raise
                except BaseException:
                    progress.finished(step, f"stopped after {time.monotonic() - started:.1f}s")
                    raise
        except OSError as exc:  # the step log's last write (on close) can fail on a full disk too
            if isinstance(exc.__context__, DiskFull):
                raise exc.__context__ from None
            full = disk_full(exc, store.root / "tmp", f"{step.kind} step of {step.name}")
            if full is not None:
                raise full from exc
            raise
        progress.finished(step, f"built in {duration:.1f}s")
        return Built(entry, False)


def publishes(step: Step) -> bool:
    from crust.steps import KINDS
    from crust.steps.kind import nothing_published

    return KINDS[step.kind].publish is not nothing_published


def reads(later: Step, step: Step) -> bool:
    """A later step reads an earlier one's files only if that step is one of its inputs (its id
    is part of the later one's: a step reading files its id does not cover would be a bug)."""
    return step.kind in later.inputs


def must_run(store: Store, remote: RemoteCache | None, step: Step) -> bool:
    """The step is neither in the store nor (signed by a trusted key) in the shared cache."""
    return store.get(step.kind, step.id) is None and (remote is None or remote.peek(step.kind, step.id) is None)


def build_appliance(
    plan: AppliancePlan, store: Store, output: Path, project: Project, progress: Progress, remote: RemoteCache | None = None
) -> Manifest:
    """Build the appliance's steps that are missing, publish its artifacts, write its manifest."""
    # The steps' scratch folder for this build (Job.scratch): in tmp/ with this process's id, so
    # a killed build's is removed by the next (Store.remove_stale_tmp).
    scratch = store.root / "tmp" / f"scratch-{plan.spec.name}-{plan.build_id}.{os.getpid()}"
    try:
        return _build_appliance(plan, store, output, project, progress, remote, scratch)
    finally:
        remove_tree(scratch)


def _build_appliance(
    plan: AppliancePlan, store: Store, output: Path, project: Project, progress: Progress, remote: RemoteCache | None, scratch: Path
) -> Manifest:
    from crust.formats import FORMATS
    from crust.steps import KINDS, Job
    from crust.steps.kind import command_environment

    started = time.monotonic()
    built: dict[str, Built] = {}

    def make_action(step: Step, plan: AppliancePlan) -> Callable[[Path], dict[str, Any]]:
        def action(tmp: Path) -> dict[str, Any]:
            materialize(step, plan)
            entries = {key: b.entry for key, b in built.items()}
            with step_env(command_environment(plan.epoch)):
                outputs = KINDS[step.kind].run(Job(plan, step, tmp, store, project, entries, scratch))
            took = outputs.setdefault("phases_s", [])
            with phase("clamp times", took):
                clamp_times(tmp, plan.epoch)  # the step's files too (disk.raw, the SBOM): its output is its bytes and times
            started_from = STARTS_FROM.get(step.kind)
            if started_from is not None and os.environ.get("CRUST_SHARE_FILES") != "0":  # 0: whole copies (bench/store.py's baseline)
                with phase("share unchanged files", took):
                    # store what the step changed: its unchanged files are links to the earlier entry's
                    share_files(tmp / "tree", entries[plan.step(started_from).key].path / "tree")
            return outputs

        return action

    def materialize(step: Step, plan: AppliancePlan) -> None:
        """Obtain the entries this step reads that were left in the shared cache (its record
        only): a fetch planned after them failed, so this step runs here after all."""
        for earlier in plan.steps[: plan.steps.index(step)]:
            done = built.get(earlier.key)
            if done is None or not isinstance(done.entry, RemoteEntry) or not reads(step, earlier):
                continue
            recorded = done.entry.meta.get("output_digest")
            got = ensure(store, earlier, make_action(earlier, plan), progress, remote)
            if recorded and got.entry.meta.get("output_digest") != recorded:
                forget_equivalence(store.root / "state", earlier.kind, earlier.id)
                raise StepFailed(
                    f"{earlier.kind} step of {earlier.name}: its shared cache entry could not be used, and built here it made "
                    "other output than the cache's, which the steps after it were planned from (fix: run the build again: "
                    "it plans from this store's own output now)"
                )
            built[earlier.key] = got

    state = store.root / "state"
    index = 0
    while index < len(plan.steps):
        step = plan.steps[index]
        action = make_action(step, plan)

        def replan(plan: AppliancePlan, canonical: str, step: Step = step, index: int = index) -> AppliancePlan:
            if canonical == step.id or all(later.inputs.get(step.kind, canonical) == canonical for later in plan.steps[index + 1 :]):
                return plan
            # Early cut-off: the same output as an earlier step of its kind. The steps after it
            # are planned from that one (and are reused when the store has them); the plan is
            # made again only when it was made before the equivalence was known.
            again = plan_appliance(project, plan.spec.name, state, False, plan.formats)
            assert again.steps[index].id == step.id, "planning again changed a step already built"
            progress.say(step, f"output unchanged (the same as {canonical[:12]}'s): the steps after it start from that one")
            return again

        seen = remote.peek(step.kind, step.id) if remote is not None and store.get(step.kind, step.id) is None else None
        made = str(seen["meta"].get("output_digest") or "") if seen is not None and seen.get("meta") else ""
        if seen is not None and made:
            # The pusher's early cut-off first: the steps after this one are then looked up in
            # the cache by the ids it built them under.
            adopt_equivalence(state, step.kind, step.id, made, str(seen.get("canonical") or step.id))
            plan = replan(plan, record_output(state, step.kind, step.id, made))
        if (
            seen is not None
            and made
            and not publishes(step)
            and not any(reads(s, step) and must_run(store, remote, s) for s in plan.steps[index + 1 :])
        ):
            # In the shared cache, and nothing here reads its files: its record is enough.
            remote_entry = RemoteEntry(step.kind, step.id, store.root / "steps" / f"{step.kind}-{step.id}", seen["meta"])
            built[step.key] = Built(remote_entry, True, True, record_output(state, step.kind, step.id, made))
            progress.say(step, f"in the shared cache ({step.id[:12]}): not fetched, no step here reads its files")
        else:
            built[step.key] = done = ensure(store, step, action, progress, remote)
            plan = replan(plan, done.canonical)
        index += 1
    out_dir = output / plan.spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, Path]] = []
    artifacts: list[Artifact] = []
    records: dict[str, Any] = {}
    for step in plan.steps:
        kind, entry = KINDS[step.kind], built[step.key].entry
        for published in kind.publish(plan, step, entry):
            dest = out_dir / published.dest
            files.append((entry.path / published.source, dest))
            if published.format is not None:
                facts = entry.meta["outputs"][published.source]
                artifacts.append(Artifact(published.format, dest, facts["sha256"], facts["size"], facts["allocated"]))
        records.update(kind.record(plan, step, entry, out_dir))
    manifest = make_manifest(plan, built, artifacts, records, store)
    built_formats = {a.format for a in artifacts}
    gone = [out_dir / f"{plan.spec.name}.{fmt}" for fmt in FORMATS if fmt not in built_formats]
    with store.lock(f"publish-{plan.spec.name}"):
        publish(out_dir, files, manifest, gone)
    manifest.path = out_dir / "manifest.json"
    store.record_build(
        plan.spec.name,
        {
            "appliance": plan.spec.name,
            "build_id": plan.build_id,
            "steps": [{"kind": s.kind, "name": s.name, "id": s.id, "inputs": dict(s.inputs), "explain": dict(s.explain)} for s in plan.steps],
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - started, 2),
        },
    )
    return manifest


def build_all(
    plans: list[AppliancePlan], store: Store, output: Path, project: Project, progress: Progress, jobs: int = 1, remote: RemoteCache | None = None
) -> dict[str, Manifest]:
    """Build every plan, up to jobs at a time; a step shared by several plans is built once
    (the others wait on its lock). One failed appliance does not stop the others."""
    from concurrent.futures import wait

    from crust.runner import stop_all

    manifests: dict[str, Manifest] = {}
    failures: dict[str, BaseException] = {}
    if jobs <= 1:
        for plan in plans:
            manifests[plan.spec.name] = build_appliance(plan, store, output, project, progress, remote)
        return manifests
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="crust-build") as pool:
        futures = {pool.submit(build_appliance, plan, store, output, project, progress, remote): plan.spec.name for plan in plans}
        try:
            wait(futures)
        except KeyboardInterrupt:
            stop_all()
            for future in futures:
                future.cancel()
            wait(futures)
            raise
        for future, name in futures.items():
            exc = future.exception()
            if exc is None:
                manifests[name] = future.result()
            else:
                failures[name] = exc
    if failures:
        if any(isinstance(e, KeyboardInterrupt) for e in failures.values()):
            raise KeyboardInterrupt
        lines = [f"{name}: {exc}" for name, exc in failures.items()]
        raise StepFailed(f"{len(failures)} of {len(plans)} appliances failed: " + "; ".join(lines))
    return manifests


def make_manifest(plan: AppliancePlan, built: dict[str, Built], artifacts: list[Artifact], records: dict[str, Any], store: Store) -> Manifest:
    from crust.steps import KINDS

    steps = []
    for step in plan.steps:
        meta = built[step.key].entry.meta
        steps.append(
            {
                "kind": step.kind,
                "name": step.name,
                "id": step.id,
                "reused": built[step.key].cached,
                "duration_s": meta["duration_s"],
                "built": meta["created"],
                "log": str(store.log_path(step.kind, step.id)),
            }
        )
    manifest = Manifest(
        appliance=plan.spec.name,
        version=plan.spec.version,
        description=plan.spec.description,
        distribution=plan.distro.name,
        build_id=plan.build_id,
        crust_version=__version__,
        inputs={(step.name if KINDS[step.kind].multiple else step.kind): dict(step.inputs) for step in plan.steps},
        steps=steps,
        artifacts=artifacts,
        source_date_epoch=plan.epoch,
        tools={k.split(":", 1)[1]: v for step in plan.steps for k, v in sorted(step.inputs.items()) if k.startswith("tool:")},
    )
    for key, value in records.items():
        if hasattr(manifest, key) and key not in ("extra", "path"):
            setattr(manifest, key, value)
        else:
            manifest.extra[key] = value
    return manifest
