"""Preparing producer events for the log: validate -> pseudonymise -> data keys -> encrypt ->
Avro-encode. This is the CPU-heavy half of publishing; it runs in the publishing process for
small inputs and in a pool of worker processes for large ones (each worker opens the key
vault itself, so keys stay durable before any ciphertext that needs them)."""

from __future__ import annotations

import hashlib
import json
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ledger.adapters.dead_letters import Reject
from ledger.adapters.lifeline import die_with_parent
from ledger.bootstrap import open_vault
from ledger.config import Settings
from ledger.contracts.codec import AvroCodec
from ledger.contracts.schemas import SchemaRegistry, default_registry
from ledger.domain.blobs import encrypt_blob
from ledger.domain.chain import PendingRecord
from ledger.domain.errors import CodecError, InvalidEvent
from ledger.domain.events import Event
from ledger.domain.intake import MAX_PII_BYTES, Draft, Intake
from ledger.domain.notices import PublishedHashes, consent_notice_sha256
from ledger.domain.pseudonyms import pseudonym
from ledger.domain.vocabulary import key_category
from ledger.ports import KeyRef, KeyVault


@dataclass(frozen=True, slots=True)
class Unit:
    """Items appended atomically together, all stamped with one recorded_at."""

    recorded_at: int
    items: list[tuple[int, Any]]  # (line or item number, raw bytes or a dict)


@dataclass(slots=True)
class Prepared:
    pending: list[PendingRecord] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    recorded_at: int = 0
    # Parallel to ``pending``: the item number each record came from, and the data key it is
    # encrypted under (None: no personal data).
    numbers: list[int] = field(default_factory=list)
    keys: list[KeyRef | None] = field(default_factory=list)
    # The vault's epoch read before the keys were fetched (None: unknown): the writer checks
    # under its lock that no key changed since, else checks the used keys one by one.
    epoch: int | None = None
    unconfirmed: set[KeyRef] = field(default_factory=set)  # pending keys these records use


def content_digest(event: Event, pii: Any) -> bytes:
    """SHA-256 over the canonical producer content: type, controller, subject pseudonym,
    occurred_at, source, actor, body and the personal data's ``pii`` plaintext; not
    recorded_at, not the blob (its nonce is random), not the natural identifier (the
    pseudonym stands for it)."""
    content = [event.type, event.controller, event.subject, event.occurred_at, event.source,
               event.actor, event.body, pii]
    if _C_CANONICAL is not None:  # the C encoder made once: a third of the cost per event
        return hashlib.sha256("".join(_C_CANONICAL(content, 0)).encode()).digest()
    return hashlib.sha256(_CANONICAL.encode(content).encode()).digest()


def _bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} in event content")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_bytes)
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_CANONICAL = (  # the same encoding (ASCII, sorted keys, compact) without per-call set-up
    _make_encoder(None, _bytes, json.encoder.encode_basestring_ascii, None, ":", ",", True,
                  False, True)
    if _make_encoder is not None else None
)


class Preparer:
    def __init__(
        self,
        intake: Intake,
        secrets: Mapping[str, bytes],
        vault: KeyVault,
        registry: SchemaRegistry | None = None,
        notices: Callable[[], PublishedHashes] | None = None,
    ) -> None:
        self.intake = intake
        # The published notices a ConsentGiven is checked against, asked for only when a
        # consent comes (``ledger.app.notices.NoticeIndex``).
        self.notices = notices
        self.secrets = secrets
        self.vault = vault
        self.codec = AvroCodec(registry or default_registry())

    def prepare_all(self, package: list[Unit], origin: str) -> list[Prepared]:
        """Prepares units; the data keys of the whole package are fetched (and new ones made
        durable) in one vault transaction."""
        validated = [self._validate(unit, origin) for unit in package]
        users: dict[tuple[str, str, str], list[str]] = {}
        for _, drafts in validated:
            for _, _, d, subject in drafts:
                if d.identifier or d.pii or d.account_ref:
                    users.setdefault((d.controller, subject, key_category(d.type)), []).append(d.event_id)
        epoch = self.vault.epoch() if users else None
        keys = self.vault.data_keys(set(users), users) if users else {}
        for out, drafts in validated:
            out.epoch = epoch
            for number, item, d, subject in drafts:
                try:
                    record, key = self._encode(d, subject, out.recorded_at, keys)
                except (CodecError, InvalidEvent) as e:
                    out.rejects.append(Reject(origin, number, str(e), raw_input(item)))
                    continue
                out.pending.append(record)
                out.numbers.append(number)
                out.keys.append(key)
                if key is not None and keys[key[:3]].pending:
                    out.unconfirmed.add(key)
        return [out for out, _ in validated]

    def prepare(self, unit: Unit, origin: str) -> Prepared:
        return self.prepare_all([unit], origin)[0]

    def _validate(self, unit: Unit, origin: str) -> tuple[Prepared, list[tuple[int, Any, Draft, str]]]:
        now = unit.recorded_at
        out = Prepared(recorded_at=now)
        drafts: list[tuple[int, Any, Draft, str]] = []
        for number, item in unit.items:
            try:
                if isinstance(item, (bytes, bytearray)):
                    draft = self.intake.parse_line(bytes(item), now)
                else:
                    draft = self.intake.validate(item, now)
                if draft.type == "ConsentGiven" and self.notices is not None:
                    draft = self._with_notice(draft, self.notices())
            except InvalidEvent as e:
                out.rejects.append(Reject(origin, number, str(e), raw_input(item)))
                continue
            drafts.append((number, item, draft, self.subject_of(draft)))
        return out, drafts

    @staticmethod
    def _with_notice(d: Draft, published: PublishedHashes) -> Draft:
        sha = consent_notice_sha256(d.controller, d.body, published)
        if sha == d.body.get("notice_sha256"):
            return d
        return replace(d, body={**d.body, "notice_sha256": sha})

    def _encode(self, d: Draft, subject: str, now: int,
                keys: Mapping[Any, Any]) -> tuple[PendingRecord, KeyRef | None]:
        personal: dict[str, Any] = {}
        if d.identifier:
            personal["subject"] = {d.identifier[0]: d.identifier[1]}
        if d.account_ref:
            personal["account_ref"] = d.account_ref
        if d.pii:
            personal["pii"] = d.pii
        blob = None
        ref: KeyRef | None = None
        if personal:
            plaintext = json.dumps(personal, ensure_ascii=False, separators=(",", ":")).encode()
            if len(plaintext) > MAX_PII_BYTES + 1024:
                raise InvalidEvent(f"{len(plaintext)} bytes of personal data, over the limit", "pii")
            key = keys[(d.controller, subject, key_category(d.type))]
            blob = encrypt_blob(key, plaintext, d.event_id)
            ref = (key.controller, key.subject, key.category, key.generation)
        body = d.body
        if d.account_ref:
            body = {**body, "account_ref": pseudonym(self.secrets[d.controller], "account", d.account_ref)}
        event = Event(d.type, d.event_id, d.controller, subject, d.occurred_at, now,
                      d.source, d.actor, body, blob)
        return PendingRecord(d.event_id, d.type, subject, now, self.codec.encode(event),
                             content_digest(event, d.pii or None)), ref

    def subject_of(self, d: Draft) -> str:
        if d.subject_id is not None:
            return d.subject_id
        assert d.identifier is not None
        return pseudonym(self.secrets[d.controller], *d.identifier)


def raw_input(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    try:
        return json.dumps(item, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):  # not JSON: too deep, a huge int, odd keys
        pass
    try:
        return _BOUNDED_REPR.repr(item).encode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a dead letter must be written whatever the object is
        return b"(an object that cannot be represented)"


_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel = 20
_BOUNDED_REPR.maxdict = _BOUNDED_REPR.maxlist = _BOUNDED_REPR.maxtuple = 1000
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxother = 1 << 16


# Worker processes ---------------------------------------------------------------------------
_worker: Preparer | None = None


def worker_init(settings: Settings, master_key: bytes, controllers: list[str],
                secret_names: dict[str, str], notices: PublishedHashes | None = None) -> None:
    """Each worker opens its own handle on the ledger's vault, chosen by ``ledger.bootstrap``."""
    global _worker
    die_with_parent()  # a killed publisher leaves no workers behind (issue 9, row 16)
    vault = open_vault(settings, master_key)
    secrets = {c: vault.secret(name) for c, name in secret_names.items()}
    published = notices or {}
    _worker = Preparer(Intake(default_registry(), controllers), secrets, vault,
                       notices=lambda: published)


def worker_prepare(package: list[Unit], origin: str) -> list[Prepared]:
    assert _worker is not None, "worker_init was not run"
    return _worker.prepare_all(package, origin)
