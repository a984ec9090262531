"""The scan corpus counted: how many files of each class, and the verdicts owl gives them.

The corpus is tests/support/corpus.py (malicious, malformed and benign files, each malicious
one with a benign twin); tests/scan/test_corpus.py holds each file to its expected verdict.
This prints one JSON line: per class, the files by intent and the verdicts, and every file
whose verdict is not the expected one (none, when the suite passes).

    .venv/bin/python scripts/scan_corpus.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from owl.scan import blocking, scan_file  # noqa: E402
from tests.support.corpus import CASES  # noqa: E402


def main() -> None:
    classes: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    wrong = []
    with tempfile.TemporaryDirectory(prefix="owl-corpus-") as tmp:
        for index, case in enumerate(CASES):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            report = scan_file(case.write(folder))
            if any(blocking(finding, strict=False) for finding in report.findings):
                verdict = "unsafe"
            else:
                verdict = "unverified" if report.status == "unverified" else "clean"
            classes[case.group][case.intent][verdict] += 1
            if verdict != case.expect:
                wrong.append({"class": case.group, "file": case.label, "verdict": verdict})
    print(
        json.dumps(
            {
                "corpus_files": len(CASES),
                "classes": {
                    group: {intent: dict(verdicts) for intent, verdicts in intents.items()}
                    for group, intents in classes.items()
                },
                "unexpected": wrong,
            }
        )
    )


if __name__ == "__main__":
    main()
