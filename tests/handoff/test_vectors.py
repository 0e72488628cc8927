"""The hex test vectors in protocols/igor-*-1.0.0.md are what the codec produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import RejectCode
from igor_p2p.handoff.messages import (
    Abort,
    Ack,
    Commit,
    Confirm,
    Message,
    Reject,
    StatusQuery,
    StatusReply,
    decode,
    encode,
)

ROOT = Path(__file__).resolve().parents[2]
MID = bytes(range(16))
D = bytes(32)
AG = "did:key:z6Mk"

VECTORS: list[tuple[str, Message]] = [
    ("igor-migrate-1.0.0.md", Ack("peerB", AG, 1, MID, D)),
    ("igor-migrate-1.0.0.md", Reject("peerB", AG, MID, RejectCode.BUSY)),
    ("igor-migrate-1.0.0.md", Commit("peerA", AG, MID, b"record")),
    ("igor-migrate-1.0.0.md", Confirm("peerB", AG, MID, 2)),
    ("igor-migrate-1.0.0.md", Abort("peerA", AG, MID)),
    ("igor-recover-1.0.0.md", StatusQuery("peerB", AG, MID, 1)),
    (
        "igor-recover-1.0.0.md",
        StatusReply("peerA", AG, AuthorityState.RETIRED, 1, MID, b"record", D),
    ),
]


def render_vectors(doc: str) -> str:
    lines = []
    for name, message in VECTORS:
        if name == doc:
            lines.append(
                f"- `{message.TYPE.value}` `{message!r}`:\n\n  `{encode(message).hex()}`\n"
            )
    return "\n".join(lines)


@pytest.mark.parametrize(("doc", "message"), VECTORS, ids=lambda v: getattr(v, "TYPE", v))
def test_documented_vector_decodes_to_its_message(doc: str, message: Message) -> None:
    text = (ROOT / "protocols" / doc).read_text(encoding="utf-8")
    hexed = encode(message).hex()
    assert hexed in text, f"vector for {message.TYPE} missing from {doc}"
    assert decode(bytes.fromhex(hexed)) == message
