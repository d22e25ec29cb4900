"""The pieces of the change archive that need no server: snapshot visibility across xid epochs, the
decoder's refusals, the chain's gap detection."""

from __future__ import annotations

import struct

import pytest

from coldcopy.pitr.chain import Chain, segment_hash
from coldcopy.pitr.pgoutput import DecodeError, Decoder, Relation, lsn_int, lsn_text
from coldcopy.pitr.snapshot import Snapshot


def test_snapshot_visibility_follows_xmin_xmax_and_the_in_progress_list():
    snapshot = Snapshot.parse("100:105:101,103")
    assert snapshot.visible(99) and snapshot.visible(100) and snapshot.visible(102) and snapshot.visible(104)
    assert not snapshot.visible(101) and not snapshot.visible(103)  # in progress when the dump began
    assert not snapshot.visible(105) and not snapshot.visible(200)  # started after it


def test_snapshot_visibility_across_an_xid_epoch():
    epoch = 1 << 32
    snapshot = Snapshot.parse(f"{epoch - 10}:{epoch + 5}:{epoch + 2}")  # xmin in epoch 0, xmax in epoch 1
    assert snapshot.visible((epoch - 20) & 0xFFFFFFFF)  # 4294967276: epoch 0, before xmin
    assert snapshot.visible(1)  # epoch 1, before xmax, not in progress
    assert not snapshot.visible(2)  # in progress
    assert not snapshot.visible(6)  # after xmax
    assert snapshot.visible((epoch - 1) & 0xFFFFFFFF)  # epoch 0, between xmin and xmax, not in progress


def test_lsn_text_round_trips():
    for text in ("0/0", "0/194E1F0", "1A/FF000010"):
        assert lsn_text(lsn_int(text)) == text


def test_the_decoder_refuses_what_it_was_not_asked_for():
    decoder = Decoder()
    decoder.relations[1] = Relation(1, "public", "t", [], [])
    with pytest.raises(DecodeError, match="outside a transaction"):
        decoder.feed(b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!h", 0))
    with pytest.raises(DecodeError, match="message b'Z'"):
        decoder.feed(b"Z")
    with pytest.raises(DecodeError, match="Commit without Begin"):
        decoder.feed(b"C" + struct.pack("!bqqq", 0, 1, 2, 3))


def test_a_chain_with_a_missing_or_relinked_segment_breaks_at_the_right_place():
    head = {"chain": "c", "start_lsn": "0/10", "created_at": "2026-11-29T10:00:00+00:00"}

    def segment(seq: int, prev: dict | None, start: str, end: str) -> dict:
        return {"chain": "c", "seq": seq, "prev_hash": segment_hash(prev) if prev else None, "start_lsn": start,
                "end_lsn": end, "last_commit": f"2026-11-29T10:0{seq}:00+00:00"}

    one = segment(1, None, "0/10", "0/20")
    two = segment(2, one, "0/20", "0/30")
    three = segment(3, two, "0/30", "0/40")
    assert Chain("c", head, [one, two, three]).break_after() is None
    assert Chain("c", head, [one, three]).break_after()["seq"] == 1  # two is missing
    forged = {**two, "rows": 1}
    assert Chain("c", head, [one, forged, three]).break_after()["seq"] == 2  # three links to the real two
    assert Chain("c", head, [two, three]).break_after()["seq"] == 0  # the first is missing
