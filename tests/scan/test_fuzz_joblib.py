"""Fuzzing the joblib readers: real joblib files mutated and cut give findings or
Unverified, never anything else, and a file owl passes is one from which joblib.load
imports nothing outside owl's table (tried with every import refused, never run)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owl.scan import scan_file
from owl.scan.joblib_files import scan_joblib
from owl.scan.pickle_policy import policy
from owl.scan.pickles import scan_pickle
from tests.scan.test_fuzz_pickles import assert_findings_or_unverified, mutations
from tests.scan.test_joblib_files import Reduces, arrays, unaligned

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """joblib files to mutate: plain, unaligned, with a payload, and compressed."""
    folder = tmp_path_factory.mktemp("joblib-seeds")
    small = {"w": np.arange(6.0), "o": np.array([1, "x"], dtype=object), "n": arrays()["nodes"]}
    plain = []
    for protocol in (2, 4, 5):
        joblib.dump(small, folder / "p.joblib", protocol=protocol)
        plain.append((folder / "p.joblib").read_bytes())
    plain.append(unaligned(small, folder / "u.joblib").read_bytes())
    joblib.dump({"w": np.ones(3), "x": Reduces(os.system, "echo owl")}, folder / "e.joblib")
    plain.append((folder / "e.joblib").read_bytes())
    compressed = []
    for compressor in ("zlib", "gzip", "xz"):
        joblib.dump(small, folder / "c", compress=compressor)
        compressed.append((folder / "c").read_bytes())
    return {"plain": plain, "compressed": compressed}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("joblib-fuzz") / "model.joblib"


def imports_outside_the_table(path: Path) -> list[str]:
    """The names joblib.load tries to import from the file that owl's table does not
    allow: each is refused instead of imported, the object arrays' pickles' included."""
    from joblib import numpy_pickle

    table = policy()
    allowed = table.allowed | table.allowed_in["joblib"]
    refused: list[str] = []

    def guard(module: str, name: str) -> None:
        if f"{module}.{name}" not in allowed:
            refused.append(f"{module}.{name}")
            raise pickle.UnpicklingError(f"refused {module}.{name}")

    class Guarded(numpy_pickle.NumpyUnpickler):
        def find_class(self, module: str, name: str) -> object:
            guard(module, name)
            return super().find_class(module, name)

    class GuardedPlain(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            guard(module, name)
            return super().find_class(module, name)

    plain_load, numpy_unpickler = pickle.load, numpy_pickle.NumpyUnpickler
    pickle.load = lambda file, **kw: GuardedPlain(file, **kw).load()  # object arrays
    numpy_pickle.NumpyUnpickler = Guarded  # type: ignore[misc]
    try:
        joblib.load(path)
    except Exception:  # a mutated file may well fail to load: only imports matter here
        pass
    finally:
        pickle.load, numpy_pickle.NumpyUnpickler = plain_load, numpy_unpickler  # type: ignore[misc]
    return refused


@FUZZ
@given(data=st.data())
def test_mutated_joblib_files(data: st.DataObject, seeds: dict, scratch: Path) -> None:
    sample = data.draw(mutations(seeds["plain"]))
    scratch.write_bytes(sample)
    assert_findings_or_unverified(scan_pickle, scratch, file="model.joblib")
    report = scan_file(scratch)
    if report.status == "scanned" and not report.findings:
        # owl is never more permissive than joblib.load: nothing it passes imports more.
        assert imports_outside_the_table(scratch) == [], sample


@FUZZ
@given(data=st.data())
def test_mutated_compressed_joblib_files(data: st.DataObject, seeds: dict, scratch: Path) -> None:
    scratch.write_bytes(data.draw(mutations(seeds["compressed"])))
    assert_findings_or_unverified(scan_joblib, scratch, file="model.joblib")
    assert scan_file(scratch).status in ("scanned", "unverified")


def test_every_seed_is_clean_or_flagged_as_expected(seeds: dict, tmp_path: Path) -> None:
    path = tmp_path / "seed.joblib"
    verdicts = []
    for sample in seeds["plain"] + seeds["compressed"]:
        path.write_bytes(sample)
        verdicts.append([f.check for f in scan_file(path).findings])
        assert scan_file(path).status == "scanned"
    assert verdicts.count(["pickle.dangerous-global"]) == 1
    path.write_bytes(seeds["plain"][-1])  # the oracle sees what owl found
    assert imports_outside_the_table(path) == ["posix.system"]
    assert sum(1 for found in verdicts if not found) == len(verdicts) - 1
