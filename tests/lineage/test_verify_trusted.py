"""verify_lineage(trusted=...) skips only the signature check of entries already verified."""

import dataclasses

from igor_p2p.lineage.verify import ProblemCode, verify_lineage

from .builders import happy_lineage


def _forge_signature(entries: list, index: int) -> list:
    forged = dataclasses.replace(entries[index], signature=bytes(64))
    out = list(entries)
    out[index] = forged
    return out


def test_untrusted_forged_signature_is_still_reported() -> None:
    entries = _forge_signature(happy_lineage().entries, 2)
    trusted = {e.digest() for i, e in enumerate(entries) if i != 2}
    report = verify_lineage(entries, trusted=trusted)
    assert ProblemCode.BAD_SIGNATURE in report.codes()


def test_trusted_prefix_skips_only_its_signatures() -> None:
    entries = happy_lineage().entries
    report = verify_lineage(entries, trusted={e.digest() for e in entries[:3]})
    assert report.valid


def test_trusted_entries_still_obey_chain_rules() -> None:
    entries = happy_lineage().entries
    reordered = [entries[0], *entries[2:]]  # a missing link cannot be trusted away
    report = verify_lineage(reordered, trusted={e.digest() for e in reordered})
    assert ProblemCode.ORPHAN in report.codes()
