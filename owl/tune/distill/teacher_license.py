"""What a teacher's license says of training on its outputs (owl/licenses terms.toml
`output_training`: free, derivative, forbidden): warnings for the user, a record for the student.

Some licenses (Llama 3, Gemma) reach models trained on their outputs; those are surfaced.
"""

from __future__ import annotations

from typing import Any

from owl.licenses.terms import terms


def teacher_notices(license_id: str | None, teacher: str) -> list[str]:
    """What the teacher's license says of a model trained on its outputs, as warnings."""
    known = terms(license_id)
    if known is None:
        said = (
            f"its license ({license_id}) is one owl has no terms for"
            if license_id
            else ("its license is not recorded")
        )
        return [
            f"teacher {teacher}: {said}; read its terms on training other models with its "
            "outputs before you use or share the student"
        ]
    rule = known.output_training
    if rule is None:
        return [
            f"teacher {teacher} ({known.id}): owl has no record of what its license says of "
            "training on its outputs; read it"
        ]
    clause = f" ({known.id} {rule.clause})" if rule.clause else f" ({known.id})"
    if rule.rule == "free":
        return []
    notices = [f"teacher {teacher}: {rule.text}{clause}"]
    if rule.rule == "derivative":
        notices += [f"carried to the student: {ob.render(known.id)}" for ob in known.obligations]
    else:
        notices.append(
            f"the student may be used only within {known.name}'s own model family; "
            "`owl license check` on it says denied otherwise"
        )
    return notices


def teacher_terms(license_id: str | None) -> dict[str, Any]:
    """The record of the teacher's output-training terms kept in the student's manifest."""
    known = terms(license_id)
    rule = known.output_training if known is not None else None
    return {
        "license": known.id if known is not None else license_id,
        "rule": rule.rule if rule is not None else "unknown",
        "clause": rule.clause if rule is not None else None,
        "text": rule.text if rule is not None else None,
    }
