"""owl.tune.options: TuneOptions' defaults, bounds, and what a resumed run must share."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from owl.tune import TuneOptions
from owl.tune.options import RUN_KEYS


def test_alpha_defaults_to_twice_the_rank() -> None:
    assert TuneOptions().alpha == 16.0
    assert TuneOptions(rank=4).alpha == 8.0
    assert TuneOptions(rank=4, alpha=3).alpha == 3.0


def test_where_a_run_stops_is_not_part_of_its_identity() -> None:
    short, long = TuneOptions(max_steps=2, epochs=1), TuneOptions(max_steps=9, epochs=3)
    assert short.run_identity() == long.run_identity()
    assert set(short.run_identity()) == set(RUN_KEYS)
    assert TuneOptions(lr=1e-3).run_identity() != short.run_identity()


@pytest.mark.parametrize(
    "bad",
    [{"rank": 0}, {"dropout": 1.0}, {"device": "tpu"}, {"outtype": "q4_0"}, {"nproc": 0}],
)
def test_out_of_range_options_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        TuneOptions(**bad)
