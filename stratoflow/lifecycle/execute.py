"""Carrying out a plan: each action through the catalogue (the store) and a transport (the
storage backends). Plain Python; the policy DAG's execute and verify tasks call it.

Every step is written to converge when repeated: a copy is recorded COPYING with a QUEUED
transfer before any byte moves, and a deletion BEING_DELETED before the storage call, so
a run cut short anywhere leaves a state the next plan finishes (resume, delete, restore).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from stratoflow.lifecycle.model import FileRecord, Replica, Rule, RuleState
from stratoflow.lifecycle.planner import Action, DatasetState
from stratoflow.lifecycle.policy import Policy


class Transport(Protocol):
    """Moves and reads bytes at storage endpoints (the site backends behind them)."""

    def copy(self, source_url: str, dest_url: str, file: FileRecord) -> None:
        """A verified copy (checksums and size checked), or an exception saying why not."""

    def checksums(self, url: str) -> tuple[int, str | None, str | None]:
        """(size, adler32, sha256) of what is at ``url``; OSError when it is not there;
        NotImplementedError when its storage cannot read checksums back at all."""

    def delete(self, url: str) -> None:
        """Remove what is at ``url``; gone already is not an error."""

    def moves_in_bulk(self, dest_url: str) -> bool:
        """True when a service moves files into ``dest_url`` itself, many per job (FTS3):
        the run records such copies and submits them together (``Outcome.queued``)."""


class Catalogue(Protocol):
    """The writes a run makes (``stratoflow.store.Store`` implements them)."""

    def ensure_rule(
        self,
        policy: str,
        dataset_id: int,
        *,
        copies: int,
        expression: str,
        lifetime_s: int | None,
        expires_at: datetime | None,
    ) -> Rule: ...
    def set_rule_state(
        self, rule_id: int, state: RuleState, reason: str | None, stuck_at: datetime | None
    ) -> None: ...
    def lock_replica(self, rule_id: int, replica_id: int) -> None: ...
    def unlock_replica(self, rule_id: int, replica_id: int) -> None: ...
    def set_tombstone(self, replica_id: int, when: datetime | None) -> None: ...
    def begin_copy(
        self, rule_id: int, file_id: int, source_replica_id: int, endpoint: str, url: str
    ) -> tuple[int, int]: ...
    def finish_transfer(self, transfer_id: int, *, ok: bool, reason: str | None = None) -> None: ...
    def mark_verified(self, replica_id: int) -> None: ...
    def mark_bad(self, replica_id: int, reason: str) -> None: ...
    def mark_unavailable(self, replica_id: int, reason: str) -> None: ...
    def begin_replica_delete(
        self, replica_id: int, witness: int | None, fresh_since: datetime
    ) -> bool: ...
    def finish_replica_delete(self, replica_id: int) -> None: ...
    def restore_replica(self, replica_id: int) -> None: ...
    def replica(self, replica_id: int) -> Replica | None: ...


@dataclass
class Outcome:
    action: Action
    ok: bool
    note: str = ""
    # A copy left to a bulk service: what its submission needs (transfer id, URLs, file).
    queued: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.action.to_dict(), "ok": self.ok, "note": self.note}
        if self.queued is not None:
            out["queued"] = self.queued
        return out


def verify_replica(
    catalogue: Catalogue, transport: Transport, replica: Replica, file: FileRecord
) -> tuple[bool, str]:
    """Read the replica's checksums; a mismatch or a missing file marks it BAD."""
    try:
        size, adler32, sha256 = transport.checksums(replica.url)
    except NotImplementedError as e:  # says nothing about the data: its state stays
        return False, f"not verifiable where it is: {e}"
    except FileNotFoundError as e:
        catalogue.mark_bad(replica.id, f"missing: {e}")
        return False, f"BAD: missing: {e}"
    except OSError as e:  # the endpoint may be down: not proof the data is gone
        catalogue.mark_unavailable(replica.id, f"unreadable: {e}")
        return False, f"UNAVAILABLE: {e}"
    wrong = [
        f"{name} {have} != {want}"
        for name, want, have in (
            ("size", file.size, size),
            ("adler32", file.adler32, adler32),
            ("sha256", file.sha256, sha256),
        )
        if want is not None and have is not None and want != have
    ]
    if wrong:
        why = "checksum mismatch: " + ", ".join(wrong)
        catalogue.mark_bad(replica.id, why)
        return False, f"BAD: {why}"
    catalogue.mark_verified(replica.id)
    return True, "verified"


class Executor:
    def __init__(
        self,
        catalogue: Catalogue,
        transport: Transport,
        policy: Policy,
        bases: Mapping[str, str],
        *,
        started: datetime | None = None,
        crash_after: Callable[[int], None] | None = None,
    ):
        self.catalogue, self.transport, self.policy, self.bases = (
            catalogue,
            transport,
            policy,
            bases,
        )
        # A deletion's witness must have been verified by this run: since it started.
        self.started = started or datetime.now(UTC)
        # Tests cut a run short here: called before the n-th catalogue or storage call.
        self._crash = crash_after or (lambda n: None)
        self._calls = 0

    def _step(self) -> None:
        self._calls += 1
        self._crash(self._calls)

    def run(self, state: DatasetState, actions: Sequence[Action]) -> list[Outcome]:
        rule = state.rule
        files = {f.name: f for f in state.files}
        outcomes: list[Outcome] = []
        for action in actions:
            if action.kind == "create_rule":
                self._step()
                rule = self.catalogue.ensure_rule(
                    self.policy.name,
                    state.dataset.id,
                    copies=self.policy.copies,
                    expression=self.policy.storage.text,
                    lifetime_s=self.policy.lifetime_s,
                    expires_at=action.detail.get("expires_at"),
                )
                outcomes.append(Outcome(action, True, f"rule {rule.id}"))
                continue
            assert rule is not None, "the plan makes the rule first"
            outcomes.append(self._one(action, rule, files, state))
        return outcomes

    def _one(
        self,
        a: Action,
        rule: Rule,
        files: Mapping[str, FileRecord],
        state: DatasetState,
    ) -> Outcome:
        c, rid = self.catalogue, a.replica_id
        self._step()
        if a.kind == "rule_state":
            c.set_rule_state(
                rule.id,
                RuleState(a.detail["state"]),
                a.detail.get("reason"),
                a.detail.get("stuck_at"),
            )
        elif a.kind == "lock":
            c.lock_replica(rule.id, rid)  # type: ignore[arg-type]
        elif a.kind == "unlock":
            c.unlock_replica(rule.id, rid)  # type: ignore[arg-type]
        elif a.kind == "tombstone":
            c.set_tombstone(rid, a.detail["tombstone"])  # type: ignore[arg-type]
        elif a.kind == "untombstone":
            c.set_tombstone(rid, None)  # type: ignore[arg-type]
        elif a.kind == "restore":
            c.restore_replica(rid)  # type: ignore[arg-type]
        elif a.kind == "copy":
            return self._copy(a, rule, files[a.file or ""], state)
        elif a.kind == "resume_copy":
            return self._transfer(
                a,
                files[a.file or ""],
                a.detail["transfer_id"],
                a.detail["source_replica_id"],
                a.detail["dest_url"],
            )
        elif a.kind == "verify":
            replica = c.replica(rid)  # type: ignore[arg-type]
            if replica is None:
                return Outcome(a, False, "gone")
            self._step()
            ok, note = verify_replica(c, self.transport, replica, files[a.file or ""])
            return Outcome(a, ok, note)
        elif a.kind == "delete":
            replica = c.replica(rid)  # type: ignore[arg-type]
            if replica is None:
                return Outcome(a, True, "gone already")
            if not c.begin_replica_delete(replica.id, a.detail.get("witness"), self.started):
                return Outcome(
                    a, False, "kept: locked, a transfer source, or no verified witness now"
                )
            self._step()
            self.transport.delete(replica.url)
            self._step()
            c.finish_replica_delete(replica.id)
        elif a.kind == "rule_note":
            return Outcome(a, False, a.reason)
        return Outcome(a, True)

    def _copy(self, a: Action, rule: Rule, f: FileRecord, state: DatasetState) -> Outcome:
        endpoint = a.endpoint or ""
        dest_url = f"{self.bases[endpoint]}/{state.dataset.name}/{f.name}"
        _dest, transfer = self.catalogue.begin_copy(
            rule.id, f.id, a.detail["source_replica_id"], endpoint, dest_url
        )
        return self._transfer(a, f, transfer, a.detail["source_replica_id"], dest_url)

    def _transfer(
        self, a: Action, f: FileRecord, transfer: int, source_id: int, dest: str
    ) -> Outcome:
        source = self.catalogue.replica(source_id)
        if source is None:
            self.catalogue.finish_transfer(transfer, ok=False, reason="its source replica is gone")
            return Outcome(a, False, "source gone")
        if self.transport.moves_in_bulk(dest):
            queued = {
                "transfer_id": transfer,
                "source_replica_id": source.id,
                "source": source.url,
                "destination": dest,
                "file_id": f.id,
                "size": f.size,
                "adler32": f.adler32,
                "sha256": f.sha256,
            }
            return Outcome(a, False, "queued for a bulk transfer", queued=queued)
        self._step()
        try:
            self.transport.copy(source.url, dest, f)
        except Exception as e:  # the catalogue records why; the rule goes STUCK if it repeats
            self._step()
            self.catalogue.finish_transfer(transfer, ok=False, reason=f"{type(e).__name__}: {e}")
            # A source that no longer matches its checksums must not be copied from again.
            _ok, note = verify_replica(self.catalogue, self.transport, source, f)
            return Outcome(a, False, f"{e} (source {note})")
        self._step()
        self.catalogue.finish_transfer(transfer, ok=True)
        return Outcome(a, True, dest)
