"""owl.tune.checkpoints: a checkpoint by its final name is whole, only the newest KEEP stay,
and what is loaded is what was saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.errors import TuneError
from owl.tune import checkpoints

torch = pytest.importorskip("torch")


def _save(folder: Path, step: int) -> checkpoints.Checkpoint:
    return checkpoints.save(
        folder,
        step=step,
        adapter={"lora_A": torch.full((2, 3), float(step))},
        optimizer={"state": {0: {"step": torch.tensor(step)}}},
        scheduler={"last_epoch": step},
        rng={"torch": torch.get_rng_state()},
        state={"identity": {"data": "d"}},
    )


def test_saved_checkpoints_load_back_and_only_the_newest_stay(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        _save(folder, step)
    assert [c.step for c in checkpoints.checkpoints(folder)] == [4, 6]  # KEEP == 2
    assert sorted(p.name for p in folder.iterdir()) == ["step-000004", "step-000006"]
    newest = checkpoints.latest(folder)
    assert newest is not None and newest.step == 6
    loaded = checkpoints.load(newest)
    assert torch.equal(loaded["adapter"]["lora_A"], torch.full((2, 3), 6.0))
    assert loaded["optimizer"]["state"][0]["step"].item() == 6
    assert loaded["scheduler"] == {"last_epoch": 6}
    assert loaded["state"] == {"identity": {"data": "d"}, "step": 6}


def test_a_folder_without_state_json_is_not_a_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    assert checkpoints.latest(folder) is None  # no folder at all
    _save(folder, 2)
    (folder / "step-000009").mkdir()  # a crash mid-write leaves no state.json
    (folder / ".tmp-abc").mkdir()
    newest = checkpoints.latest(folder)
    assert newest is not None and newest.step == 2


def test_an_unreadable_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    saved = _save(tmp_path / "checkpoints", 2)
    (saved.path / "state.json").write_text("{not json")
    with pytest.raises(TuneError, match="delete it and resume again"):
        saved.state  # noqa: B018
    with pytest.raises(TuneError, match="is unreadable"):
        checkpoints.load(saved)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_optimizer_file_is_unreadable_not_a_crash(tmp_path: Path, damage: str) -> None:
    saved = _save(tmp_path / "checkpoints", 2)
    optimizer = saved.path / "optimizer.pt"
    whole = optimizer.read_bytes()
    optimizer.write_bytes(
        b"\x80\x02not a pickle" if damage == "garbage" else whole[: len(whole) // 2]
    )
    with pytest.raises(TuneError, match="delete it and resume again"):
        checkpoints.load(saved)
