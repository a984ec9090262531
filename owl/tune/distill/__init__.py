"""distill: a teacher answers prompts → a filtered chat dataset → `owl tune` on a student.

The teacher is a model in owl's store, run in-process through owl's engine, or any
OpenAI-compatible server (a base URL and a model id there). Each prompt gets `samples`
answers; an answer is dropped when it is empty, truncated (finish_reason "length"), not JSON
or not valid against the schema when one is given, or an exact duplicate of one kept for
the same prompt. What is kept becomes OWL_HOME/tune/<name>/<tag>/distill.jsonl (chat format),
with distill-report.json beside it (kept, dropped by reason).

Lineage: the student gets a parent of relation "teacher" with the teacher's license, and
`info["distill"]` records the prompts file's digest and the teacher's terms on training with
its outputs (owl/licenses terms.toml `output_training`: free, derivative, forbidden); some
licenses (Llama 3, Gemma) reach models trained on their outputs, and those are surfaced.

prompts.py reads the prompts, teachers.py asks them, filter.py keeps the good answers,
teacher_license.py says what the teacher's license asks, pipeline.py is the whole run.
"""

from owl.tune.distill.filter import DROP_REASONS, Answer, FilterReport, filter_answers, load_schema
from owl.tune.distill.pipeline import DistillResult, distill, record_lineage, write_dataset
from owl.tune.distill.prompts import MAX_PROMPT_CHARS, MAX_PROMPTS, Message, read_prompts
from owl.tune.distill.teacher_license import teacher_notices, teacher_terms
from owl.tune.distill.teachers import LocalTeacher, RemoteTeacher, is_teacher_url, open_teacher

__all__ = [
    "DROP_REASONS",
    "MAX_PROMPTS",
    "MAX_PROMPT_CHARS",
    "Answer",
    "DistillResult",
    "FilterReport",
    "LocalTeacher",
    "Message",
    "RemoteTeacher",
    "distill",
    "filter_answers",
    "is_teacher_url",
    "load_schema",
    "open_teacher",
    "read_prompts",
    "record_lineage",
    "teacher_notices",
    "teacher_terms",
    "write_dataset",
]
