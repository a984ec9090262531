"""owl/engine/backend.py: the contract's values (capabilities, occupancy)."""

from __future__ import annotations

import dataclasses

import pytest

from owl.engine import Capability, Occupancy


def test_capabilities_are_named_as_the_contract_says() -> None:
    assert [c.value for c in Capability] == [
        "chat", "complete", "score", "embed", "transcribe", "speak", "see", "draw", "rerank"
    ]  # fmt: skip
    assert Capability("embed") is Capability.EMBED


def test_occupancy_counts_running_and_waiting_as_busy() -> None:
    occupancy = Occupancy(slots=4, running=3, waiting=2)
    assert occupancy.busy == 5
    assert Occupancy(1, 0, 0).busy == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        occupancy.running = 0  # type: ignore[misc]
