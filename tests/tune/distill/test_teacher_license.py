"""owl.tune.distill.teacher_license: a teacher's terms on training with its outputs, as notices."""

from __future__ import annotations

from owl.tune.distill.teacher_license import teacher_notices


def test_teacher_notices_follow_the_license_terms() -> None:
    assert teacher_notices("apache-2.0", "smollm2") == []
    forbidden = teacher_notices("llama3", "llama3-8b")
    assert "except Meta Llama 3" in forbidden[0] and "§1.b.v" in forbidden[0]
    carried = teacher_notices("llama3.1", "llama3.1-8b")
    assert any('beginning with "Llama"' in notice for notice in carried)
    assert all(
        notice.startswith(("teacher llama3.1-8b", "carried to the student")) for notice in carried
    )
    gemma = teacher_notices("gemma", "gemma-3-1b")
    assert "Model Derivative" in gemma[0] and len(gemma) > 1  # its obligations follow
    assert "not recorded" in teacher_notices(None, "remote")[0]
    assert "no terms" in teacher_notices("my-own-license", "remote")[0]
