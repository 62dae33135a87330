"""Producer JSON -> a validated draft event (SPEC §3 JSON form). Pure: no I/O, no secrets.

Every rejection names the field and the rule, and never quotes a value: not the event type,
not the controller, not an unknown field's name unless it is a plain identifier
(``[a-z][a-z0-9_]*``), never a body value.

Personal data stays out of the plaintext parts of an event (SPEC §7a): it belongs in ``pii``,
which is encrypted under the subject's key.

- Envelope fields are identifiers. ``source`` is a token without '@'; ``actor`` is
  ``subject``, ``staff:<id>`` or ``system:<component>`` whose id has no '@' and does not look
  like a phone number or a personnummer.
- Every free-text field (every body string, each item of a string array) is refused if it
  looks like an e-mail address, a phone number or a Swedish personnummer/samordningsnummer
  (``personal_data_rule``). These are heuristics: a name or an address in free text cannot be
  recognised and is accepted.
- Control characters are refused in every string, ``pii`` values and attribute names
  included: C0 (NUL, BEL, ESC, CR, ...), DEL, C1 and the bidi embeddings, overrides and
  isolates U+202A-202E and U+2066-2069. Free text and ``pii`` values may hold TAB and LF (a
  multi-line address); identifiers may not.

The checks run on a view of the text that defeats simple disguises: NFKC (fullwidth digits
and U+FF20, the fullwidth at sign, become ASCII), format characters such as zero-width spaces
and soft hyphens removed, every Unicode digit read as its ASCII digit, dashes as '-' and
Unicode spaces as ' '.

Phone numbers: a run of digits with spaces, dashes or parentheses between them, which starts a
word (at the start, after a space or punctuation, not glued to a letter, '-' or '_' before it)
and is not glued to a letter after it (directly or by a dash: UUIDs and hex digests pass). Its
digits are counted group by group: with a leading '+' (or '00') it is a phone number once 7-15
digits (after the '00') end a group; with a single leading '0' (the Swedish trunk prefix:
07x-xxx xx xx, 08-123 456 78, (031) 12 34 56) once 8-10 digits do; ``46`` + ``7`` with 11
digits is a Swedish mobile in E.164 without '+'. Country codes and area codes do not start with
0 (000 ... is not a phone number). Runs that do not start with 0, 00 or + are not phone
numbers: amounts (1 234 567, 125 000 000 000), dates (2026-03-01), versions (10.0.19045),
references glued by dashes (INV-2026-0042) pass. Not recognised: a national number written
without its leading 0.

Personnummer and samordningsnummer: YYMMDD-NNNN, YYMMDD+NNNN, YYMMDDNNNN, YYYYMMDDNNNN and
YYYYMMDD-NNNN (a space for the separator too), with a plausible date (month 01-12, day valid
for the month, or day + 60 for a samordningsnummer), not glued to a letter or digit (nor by a
dash at its end, as in a UUID). The Luhn check digit is deliberately *not* required: a mistyped
personnummer is still personal data. The price is that a 10- or 12-digit number that starts
with a valid date (e.g. a compact date-time 20260301-0930) is refused too; write such values
with other separators (2026-03-01T09:30)."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from uuid import UUID

from ledger.contracts.schemas import SchemaRegistry
from ledger.domain.errors import InvalidEvent
from ledger.domain.pseudonyms import (
    IDENTIFIER_KINDS,
    MAX_IDENTIFIER,
    InvalidIdentifier,
    is_pseudonym,
    normalise,
)
from ledger.domain.timeutil import MICROS, parse_timestamp
from ledger.domain.vocabulary import FIELD_VOCABULARIES, NOTICE_TYPES, OUTBOX_TYPES, SWEEP_TYPES

MAX_LINE_BYTES = 1 << 20  # 1 MiB
MAX_PII_BYTES = 64 << 10
MAX_TEXT = 1024  # a body string
MAX_TOKEN = 128  # source, actor, list names, ids
MAX_LIST_ITEMS = 256
MAX_CLOCK_SKEW = 24 * 3600 * MICROS  # occurred_at may be at most a day ahead of the ledger

ENVELOPE_KEYS = frozenset(
    {"type", "event_id", "controller", "occurred_at", "source", "actor", "subject", "pii"}
)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_ACTOR = re.compile(r"subject|(?:staff|system):([A-Za-z0-9][A-Za-z0-9_./-]{0,63})")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # a field name that may be shown in a reason
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_LOOKS_LIKE_EMAIL = re.compile(r"[^@\s]+\s*@\s*[^@\s]+\.[A-Za-z]{2,}")
# Control characters: C0 except TAB and LF, DEL, C1, bidi embeddings/overrides/isolates.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # in identifiers
_DIGIT = re.compile(r"[0-9]")
_DIGIT_OR_AT = re.compile(r"[0-9@]")
_PHONE_RUN = re.compile(r"[0-9+(][0-9 +()-]*")
_PHONE_SEPARATORS = frozenset(" +()-")
_NOT_BEFORE_A_NUMBER = frozenset("-_")  # a number glued to a word by these is a reference
_THOUSANDS = re.compile(r"[1-9][0-9]{0,2}(?: [0-9]{3})+")  # an amount
_PERSONNUMMER = (
    re.compile(r"(?<![0-9A-Za-z])(?:18|19|20)[0-9]{2}([0-9]{2})([0-9]{2})[-+ ]?[0-9]{4}(?![0-9A-Za-z]|-[0-9A-Za-z])"),
    re.compile(r"(?<![0-9A-Za-z])[0-9]{2}([0-9]{2})([0-9]{2})[-+ ]?[0-9]{4}(?![0-9A-Za-z]|-[0-9A-Za-z])"),
)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
EMAIL_RULE = "looks like an e-mail address"
PHONE_RULE = "looks like a phone number"
PERSONNUMMER_RULE = "looks like a personnummer or samordningsnummer"
_ELSEWHERE = "; personal data belongs in pii"
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PURPOSE_FIELDS = {
    ("ConsentGiven", "purpose"),
    ("ConsentWithdrawn", "purpose"),
    ("ObjectionRaised", "purpose"),
}
_INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated producer event, before pseudonymisation and encryption."""

    type: str
    event_id: str
    controller: str
    identifier: tuple[str, str] | None  # ("email" | "account", value as given)
    subject_id: str | None  # a pseudonym given directly
    occurred_at: int
    source: str
    actor: str
    body: dict[str, Any]
    pii: dict[str, Any] | None
    account_ref: str | None  # raw account id from SubjectRegistered, to be hashed


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: str  # string, long, boolean, timestamp, string_array, long_map
    nullable: bool
    required: bool
    default: Any


def _field_spec(definition: Mapping[str, Any]) -> _Field:
    t = definition["type"]
    nullable = isinstance(t, list) and "null" in t
    if isinstance(t, list):
        t = next(x for x in t if x != "null")
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-micros":
            kind = "timestamp"
        elif t["type"] == "array":
            kind = "string_array"
        elif t["type"] == "map":
            kind = "long_map"
        else:
            kind = t["type"]
    else:
        kind = t
    has_default = "default" in definition
    return _Field(definition["name"], kind, nullable, not (nullable or has_default),
                  definition.get("default"))


def _reject(field: str | None, reason: str) -> InvalidEvent:
    return InvalidEvent(reason, field)


def _token(value: Any, field: str, max_len: int = MAX_TOKEN) -> str:
    if not isinstance(value, str):
        raise _reject(field, f"expected a string, got {_kind(value)}")
    if not value:
        raise _reject(field, "must not be empty")
    if len(value) > max_len:
        raise _reject(field, f"longer than {max_len} characters")
    _identifier_chars(value, field)
    if not _TOKEN.fullmatch(value):
        raise _reject(field, "may only contain letters, digits and _ . : / -")
    _no_personal_data(value, field)
    return value


def _identifier_chars(value: str, field: str) -> None:
    """The checks every identifier gets before its pattern, so that the reason names the rule."""
    if _CONTROL.search(value):
        raise _reject(field, "contains a control character")
    if "@" in value or "\uff20" in value:
        raise _reject(field, f"{EMAIL_RULE}{_ELSEWHERE}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _reject(field, f"expected a string, got {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise _reject(field, f"longer than {MAX_TEXT} characters")
    _unicode(value, field)
    _no_personal_data(value, field)
    return value


def _unicode(value: str, field: str) -> None:
    """Valid Unicode without control characters (TAB and LF allowed)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _reject(field, "not valid Unicode (lone surrogate)") from None
    if _CONTROL_IN_TEXT.search(value):
        raise _reject(field, "contains a control character (C0, DEL, C1 or a bidi override)")


def _no_personal_data(value: str, field: str) -> None:
    rule = personal_data_rule(value)
    if rule is not None:
        raise _reject(field, f"{rule}{_ELSEWHERE}")


def personal_data_rule(text: str) -> str | None:
    """The rule a text breaks if it looks like an e-mail address, a phone number or a
    personnummer (the module docstring gives the rules), else None."""
    if text.isascii():
        if not _DIGIT_OR_AT.search(text):
            return None  # the common case: a plain word
        view = text
    else:
        view = _view(text)
    if "@" in view and _LOOKS_LIKE_EMAIL.search(view):
        return EMAIL_RULE
    if not _DIGIT.search(view):
        return None
    for m in _PHONE_RUN.finditer(view):
        if _phone_in_run(view, m.start(), m.end()):
            return PHONE_RULE
    for pattern in _PERSONNUMMER:
        for m in pattern.finditer(view):
            month, day = int(m[1]), int(m[2])
            if day > 60:  # samordningsnummer
                day -= 60
            if 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]:
                return PERSONNUMMER_RULE
    return None


def _view(text: str) -> str:
    """The text as the detectors read it (see the module docstring)."""
    if text.isascii():
        return text
    out = []
    for c in unicodedata.normalize("NFKC", text):
        if c.isascii():
            out.append(c)
        elif c.isspace():
            out.append(" ")
        else:
            category = unicodedata.category(c)
            if category == "Cf":
                continue
            if category == "Nd":
                out.append(str(unicodedata.decimal(c)))
            elif category == "Pd" or c == "\u2212":
                out.append("-")
            else:
                out.append(c)
    return "".join(out)


def _phone_in_run(view: str, start: int, end: int) -> bool:
    """Whether a phone number starts at the run's start or at a group after a space in it.
    A run glued to a word at its end (``0123-4567-89ab``: a UUID, a hex digest, a code) is
    not a phone number."""
    tail = end
    while tail > start and view[tail - 1] in " -(+":
        tail -= 1
    if end < len(view) and (view[end].isalnum() or view[end] == "_") and " " not in view[tail:end]:
        return False
    if _THOUSANDS.fullmatch(view, start, tail):
        return False  # an amount: 125 000 000 000
    for s in range(start, tail):
        if s > start and view[s - 1] != " ":
            continue
        if s == start and s > 0 and (view[s - 1].isalnum() or view[s - 1] in _NOT_BEFORE_A_NUMBER):
            continue  # glued to a word: a reference such as INV-0042 or a hex digest
        if view[s] not in "0+(4":
            continue
        if _phone_from(view, s, tail):
            return True
    return False


def _phone_from(view: str, s: int, end: int) -> bool:
    digits = ""
    cuts: list[int] = []
    i = s
    while i < end and view[i] == "(":
        i += 1
    international = i < end and view[i] == "+"
    for j in range(i + international, end):
        c = view[j]
        if c.isdigit():
            digits += c
            if j + 1 == end or view[j + 1] in _PHONE_SEPARATORS:
                cuts.append(len(digits))
        elif c == "+" and digits:
            break  # a second number (850101+1234 is the personnummer rule's)
    if len(digits) < 3:
        return False
    if international:  # country codes do not start with 0
        return digits[0] != "0" and any(7 <= n <= 15 for n in cuts)
    if digits.startswith("00"):
        return digits[2] != "0" and any(9 <= n <= 17 for n in cuts)
    if digits.startswith("0"):  # Swedish area codes are 0 + a digit 1-9
        return any(8 <= n <= 10 for n in cuts) and digits[1] != "0"
    return digits.startswith("467") and 11 in cuts


class Intake:
    """Validates producer events against the schemas and the domain vocabulary."""

    def __init__(self, registry: SchemaRegistry, controllers: Iterable[str]) -> None:
        self.controllers = frozenset(controllers)
        self._fields = {
            t: [_field_spec(f) for f in registry.body_fields(t)] for t in registry.types()
        }
        self._allowed = {t: ENVELOPE_KEYS | {f.name for f in fs} for t, fs in self._fields.items()}

    # JSON lines ---------------------------------------------------------------------------
    def parse_line(self, line: bytes, now: int) -> Draft:
        if len(line) > MAX_LINE_BYTES:
            raise _reject(None, f"line is {len(line)} bytes, over the 1 MiB limit")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _reject(None, f"not UTF-8 (byte {e.start})") from None
        try:
            obj = _DECODER.decode(text)
        except json.JSONDecodeError as e:
            raise _reject(None, f"malformed JSON: {_printable(e.msg)} at column {e.colno}") from None
        except RecursionError:
            raise _reject(None, "malformed JSON: nested too deeply") from None
        except ValueError as e:  # duplicate keys, NaN/Infinity, oversized integers
            raise _reject(None, f"malformed JSON: {_printable(str(e))}") from None
        return self.validate(obj, now)

    # one event ----------------------------------------------------------------------------
    def validate(self, obj: Any, now: int, *, allow_sweep: bool = False) -> Draft:
        if not isinstance(obj, Mapping):
            raise _reject(None, f"an event must be a JSON object, got {_kind(obj)}")
        event_type = obj.get("type")
        if event_type is None:
            raise _reject("type", "missing")
        if not isinstance(event_type, str):
            raise _reject("type", f"expected a string, got {_kind(event_type)}")
        fields = self._fields.get(event_type)
        if fields is None:
            raise _reject("type", "unknown event type (not one of the event types of the schemas)")
        if event_type in OUTBOX_TYPES and not allow_sweep:
            raise _reject("type", f"{event_type} is recorded by the ledger's outbox (ledger outbox "
                                  "delivered|failed), not by producers")
        if event_type in SWEEP_TYPES and not allow_sweep:
            raise _reject("type", f"{event_type} is emitted by the retention sweep, not by producers")
        if event_type in NOTICE_TYPES:
            raise _reject("type", f"{event_type} is written by `ledger notice publish`, not by producers")

        unknown = obj.keys() - self._allowed[event_type]
        if "recorded_at" in unknown:
            raise _reject("recorded_at", "is stamped by the ledger; producers must not send it")
        if unknown:
            names = sorted(k for k in unknown if _nameable(k))
            hidden = len(unknown) - len(names)
            if not names:
                raise _reject(None, f"an unknown field for {event_type} (its name is not shown: "
                                    "not a plain identifier)")
            more = f", and {hidden} more not shown" if hidden else ""
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise _reject(names[0], f"unknown field for {event_type} (unknown: {shown}{more})")

        event_id = obj.get("event_id")
        if event_id is None:
            raise _reject("event_id", "missing (a UUID chosen by the producer, the idempotency key)")
        if not isinstance(event_id, str) or len(event_id) > 64:
            raise _reject("event_id", "expected a UUID string")
        if _CANONICAL_UUID.fullmatch(event_id):
            event_id = event_id.lower()
        else:
            try:
                event_id = str(UUID(event_id))
            except ValueError:
                raise _reject("event_id", "not a UUID") from None

        controller = obj.get("controller")
        if controller is None:
            raise _reject("controller", "missing")
        if not isinstance(controller, str):
            raise _reject("controller", f"expected a string, got {_kind(controller)}")
        if controller not in self.controllers:
            raise _reject("controller", "unknown controller (add it with `ledger controller add`)")

        occurred_raw = obj.get("occurred_at")
        if occurred_raw is None:
            raise _reject("occurred_at", "missing")
        try:
            occurred_at = parse_timestamp(occurred_raw)
        except ValueError as e:
            raise _reject("occurred_at", str(e)) from None
        if occurred_at > now + MAX_CLOCK_SKEW:
            raise _reject("occurred_at", "more than a day after the ledger clock")

        source = _token(obj.get("source"), "source") if "source" in obj else None
        if source is None:
            raise _reject("source", "missing")
        actor = obj.get("actor")
        if actor is None:
            raise _reject("actor", "missing")
        if not isinstance(actor, str):
            raise _reject("actor", f"expected a string, got {_kind(actor)}")
        _identifier_chars(actor, "actor")
        matched = _ACTOR.fullmatch(actor)
        if matched is None:
            raise _reject("actor", "expected 'subject', 'staff:<id>' or 'system:<component>' "
                                   "(an id of letters, digits and _ . / -, at most 64)")
        if matched[1] is not None:
            _no_personal_data(matched[1], "actor")

        identifier, subject_id = self._subject(obj.get("subject"))
        pii = self._pii(obj.get("pii"))

        body: dict[str, Any] = {}
        account_ref = None
        for f in fields:
            value = obj.get(f.name)
            if value is None:
                if f.required:
                    raise _reject(f.name, "missing")
                body[f.name] = None if f.nullable else f.default
                continue
            if event_type == "SubjectRegistered" and f.name == "account_ref":
                account_ref = self._account(value, "account_ref")
                body[f.name] = None  # the ledger stores a keyed hash, the raw id goes to pii
                continue
            body[f.name] = self._value(event_type, f, value)
        return Draft(event_type, event_id, controller, identifier, subject_id, occurred_at,
                     source, actor, body, pii, account_ref)

    def _subject(self, subject: Any) -> tuple[tuple[str, str] | None, str | None]:
        if subject is None:
            raise _reject("subject", "missing (give {\"email\": ...}, {\"account\": ...} or {\"id\": ...})")
        if not isinstance(subject, Mapping):
            raise _reject("subject", f"expected an object, got {_kind(subject)}")
        keys = list(subject)
        if len(keys) != 1 or keys[0] not in (*IDENTIFIER_KINDS, "id"):
            raise _reject("subject", "must have exactly one of 'email', 'account' or 'id'")
        kind = keys[0]
        value = subject[kind]
        if kind == "id":
            if not isinstance(value, str) or not is_pseudonym(value):
                raise _reject("subject.id", "expected a pseudonym (64 lower-case hex digits)")
            return None, value
        if kind == "email":
            if not isinstance(value, str):
                raise _reject("subject.email", f"expected a string, got {_kind(value)}")
            if len(value) > MAX_IDENTIFIER:
                raise _reject("subject.email", "not an e-mail address")
            address = _normalised("email", value, "subject.email")
            if not _EMAIL.fullmatch(address):
                raise _reject("subject.email", "not an e-mail address")
            return ("email", value), None
        return ("account", self._account(value, "subject.account")), None

    @staticmethod
    def _account(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise _reject(field, f"expected a string, got {_kind(value)}")
        if len(value) > MAX_TOKEN:
            raise _reject(field, f"expected a non-empty account id without spaces, at most {MAX_TOKEN} characters")
        account = _normalised("account", value, field)
        if any(c.isspace() for c in account):
            raise _reject(field, f"expected a non-empty account id without spaces, at most {MAX_TOKEN} characters")
        return value

    @staticmethod
    def _pii(pii: Any) -> dict[str, Any] | None:
        if pii is None:
            return None
        if not isinstance(pii, Mapping):
            raise _reject("pii", f"expected an object, got {_kind(pii)}")
        for key, value in pii.items():
            if not isinstance(key, str):
                raise _reject("pii", "attribute names must be strings")
            if len(key) > 64:
                raise _reject("pii", "attribute names are at most 64 characters")
            if _CONTROL.search(key):
                raise _reject("pii", "an attribute name contains a control character")
            if not key.isascii():
                try:
                    key.encode("utf-8")
                except UnicodeEncodeError:
                    raise _reject("pii", "an attribute name is not valid Unicode (lone surrogate)") from None
            nameable = _nameable(key)
            field = f"pii.{key}" if nameable else "pii"
            what = "" if nameable else "an attribute (its name is not shown): "
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise _reject(field, f"{what}expected a string, number, boolean or null")
            if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
                raise _reject(field, f"{what}a number outside the 64-bit integer range")
            if isinstance(value, float) and not math.isfinite(value):
                raise _reject(field, f"{what}not a finite number")
            if isinstance(value, str):
                try:
                    _unicode(value, field)
                except InvalidEvent as e:
                    raise _reject(field, what + e.reason) from None
        # A cheap upper bound (UTF-8 is at most 4 bytes a character) before an exact count.
        size = sum(len(k) + len(str(v)) + 6 for k, v in pii.items())
        if size * 4 > MAX_PII_BYTES:
            size = len(json.dumps(pii, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_PII_BYTES:
            raise _reject("pii", f"{size} bytes, over the {MAX_PII_BYTES // 1024} KiB limit")
        return dict(pii)

    @staticmethod
    def _value(event_type: str, f: _Field, value: Any) -> Any:
        name = f.name
        if f.kind == "string":
            if (event_type, name) in _PURPOSE_FIELDS:
                if not isinstance(value, str) or not _PURPOSE.fullmatch(value):
                    raise _reject(name, "expected a purpose name (lower-case letters, digits, _)")
                return value
            text = _text(value, name)
            if not text:
                raise _reject(name, "must not be empty")
            vocabulary = FIELD_VOCABULARIES.get((event_type, name))
            if vocabulary is not None and text not in vocabulary:
                raise _reject(name, f"must be one of {', '.join(sorted(vocabulary))}")
            if name == "notice_sha256" and not _HEX64.fullmatch(text):
                raise _reject(name, "expected 64 lower-case hex digits (SHA-256)")
            if name == "currency" and not _CURRENCY.fullmatch(text):
                raise _reject(name, "expected an ISO 4217 code such as SEK")
            return text
        if f.kind == "long":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                    value = int(value)
                else:
                    raise _reject(name, f"expected an integer, got {_kind(value)}")
            if not _INT64[0] <= value <= _INT64[1]:
                raise _reject(name, "outside the 64-bit integer range")
            if name == "units" and value < 0:
                raise _reject(name, "must not be negative")
            return value
        if f.kind == "boolean":
            if not isinstance(value, bool):
                raise _reject(name, f"expected true or false, got {_kind(value)}")
            return value
        if f.kind == "timestamp":
            try:
                return parse_timestamp(value)
            except ValueError as e:
                raise _reject(name, str(e)) from None
        if f.kind == "string_array":
            if not isinstance(value, list):
                raise _reject(name, f"expected an array of strings, got {_kind(value)}")
            if len(value) > MAX_LIST_ITEMS:
                raise _reject(name, f"more than {MAX_LIST_ITEMS} items")
            return [_text(v, f"{name}[{i}]") for i, v in enumerate(value)]
        if f.kind == "long_map":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value.values()
            ):
                raise _reject(name, "expected an object of integers")
            return dict(value)
        raise _reject(name, f"unsupported field kind {f.kind}")  # a schema this code lacks


def iter_lines(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines of a binary stream with bounded memory: a line longer than the limit is cut to
    limit + 1 bytes (so that intake rejects it as oversize) and its rest is skipped."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
        yield line


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup}" if _nameable(dup) else "a duplicate key (not shown)")
    return obj


def _nameable(name: Any) -> bool:
    """Whether a producer-chosen name may be shown in a reason: a plain identifier that does
    not look like personal data (names can carry it as well as values can)."""
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and personal_data_rule(name) is None


def _normalised(kind: str, value: str, field: str) -> str:
    try:
        return normalise(kind, value)
    except InvalidIdentifier as e:
        raise _reject(field, str(e).removeprefix("the identifier ")) from None


def _printable(text: str) -> str:
    return re.sub(r"[^ -~]", "?", text)[:200]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every line: json.loads would build a new one per call with these hooks.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)


def subject_hint(obj: Any, controllers: Iterable[str]) -> tuple[str, str, str] | None:
    """Whose input is this, although it may break other rules? ``(controller, kind, value)``
    when ``obj`` names a known controller and exactly one subject identifier that intake would
    accept (``email``, ``account``, or a pseudonym ``id``); None otherwise. Pure, never raises.
    The dead letters use it to encrypt rejected input under the subject's key, so that erasing
    the subject covers it."""
    try:
        if not isinstance(obj, Mapping):
            return None
        controller = obj.get("controller")
        if not isinstance(controller, str) or controller not in frozenset(controllers):
            return None
        subject = obj.get("subject")
        if not isinstance(subject, Mapping) or len(subject) != 1:
            return None
        ((kind, value),) = subject.items()
        if not isinstance(value, str):
            return None
        if kind == "id":
            usable = is_pseudonym(value)
        elif kind == "email":
            usable = len(value) <= MAX_IDENTIFIER and bool(_EMAIL.fullmatch(value.strip()))
        elif kind == "account":
            Intake._account(value, "subject.account")
            usable = True
        else:
            usable = False
        return (controller, kind, value) if usable else None
    except Exception:  # noqa: BLE001 - a hint: anything odd means "no subject"
        return None
