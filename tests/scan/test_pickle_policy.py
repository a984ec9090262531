"""Judging one import against pickle_globals.toml (owl.scan.pickle_policy), without a pickle."""

from __future__ import annotations

from owl.scan.findings import Severity
from owl.scan.pickle_policy import judge, policy


def test_an_allowed_global_is_no_finding() -> None:
    allowed = sorted(policy().allowed)[0]
    module, _, qualname = allowed.rpartition(".")
    ruling = judge(module, qualname, 4, ())
    assert ruling.name == allowed and ruling.severity is None


def test_python_2_names_are_mapped_before_they_are_judged() -> None:
    ruling = judge("__builtin__", "eval", 2, ())
    assert ruling.name == "builtins.eval" and ruling.severity is Severity.CRITICAL
    assert "builtins.eval (written __builtin__.eval)" in ruling.reason
    # From protocol 3 on, pickle takes names as written.
    assert judge("__builtin__", "eval", 3, ()).name == "__builtin__.eval"


def test_an_unknown_global_is_high_and_the_models_own_code_is_allowed() -> None:
    ruling = judge("mylib", "Thing", 4, ())
    assert (ruling.severity, ruling.check) == (Severity.HIGH, "pickle.unknown-global")
    assert judge("mylib.layers", "Thing", 4, ("mylib",)).severity is None


def test_an_attribute_path_that_reaches_os_is_critical() -> None:
    ruling = judge("collections", "OrderedDict.__init__.__globals__", 4, ())
    assert ruling.severity is Severity.CRITICAL and ruling.check == "pickle.dangerous-global"
    assert "__init__" in ruling.reason
