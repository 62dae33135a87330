from __future__ import annotations

import json

import pytest
from fastavro.schema import fingerprint

from ledger.contracts.compatibility import check_all, check_pair
from ledger.contracts.schemas import crc64_avro, default_registry, default_schema_dir
from ledger.domain.vocabulary import EVENT_TYPES


def test_every_event_type_has_a_schema_and_no_more() -> None:
    assert sorted(default_registry().types()) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("path", sorted(default_schema_dir().glob("*.avsc")), ids=lambda p: p.name)
def test_every_field_is_documented(path) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(path.read_text())
    assert schema.get("doc")
    for field in schema["fields"]:
        assert field.get("doc"), f"{path.name}: {field['name']} has no doc"


def test_crc64_avro_matches_the_reference_and_fastavro() -> None:
    # The Avro specification's CRC-64-AVRO of the empty input is the initial value itself.
    assert crc64_avro(b"") == 0xC15D213AA4D7A795
    for version in default_registry().all_versions():
        assert version.fingerprint.hex() == fingerprint(version.canonical, "CRC-64-AVRO")


def test_fingerprints_are_unique() -> None:
    prints = [v.fingerprint for v in default_registry().all_versions()]
    assert len(prints) == len(set(prints))


def test_evolved_version_reads_old_events_with_the_default() -> None:
    v1, v2 = default_registry().versions("NewsletterSubscribed")
    assert (v1.version, v2.version) == (1, 2)
    result = check_pair(v1, v2)
    assert result.ok, result.problem


def test_every_version_reads_every_earlier_version() -> None:
    results = check_all()
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]


def test_an_incompatible_change_is_caught() -> None:
    """A new required field without a default cannot read old events."""
    v1 = default_registry().versions("LoggedIn")[0]
    broken_definition = json.loads(json.dumps(v1.definition))
    broken_definition["fields"].append({"name": "mfa", "type": "boolean", "doc": "x"})
    from dataclasses import replace

    from fastavro import parse_schema

    broken = replace(v1, version=2, definition=broken_definition, fast=parse_schema(broken_definition))
    assert not check_pair(v1, broken).ok
