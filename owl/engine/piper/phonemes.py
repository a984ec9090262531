"""Text to Piper's phonemes and phoneme ids, with the espeak-ng program.

owl runs espeak-ng (GPL) as a separate program over a pipe: it never links or imports it.
The text goes in on stdin, never as an argument (a text may start with '-'), with a size
limit and a timeout. Ids are Piper's public recipe: the voice's BOS "^" and pad "_", each
phoneme's ids followed by the pad, then EOS "$"; phonemes are the NFD codepoints of
espeak-ng's IPA (so "ç" is "c" and a combining cedilla, as the voices were trained).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator, Mapping, Sequence

from owl.engine.piper.clauses import Clause, split_clauses
from owl.errors import EngineError, InvalidAudio

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
INSTALL_HINT = "apt-get install espeak-ng (Debian, Ubuntu) or brew install espeak-ng (macOS)"
MAX_TEXT_CHARS = 100_000  # far above any speak() limit: a bound on what reaches the program
TIMEOUT_S = 60.0
BOS, EOS, PAD = "^", "$", "_"

# A voice name is one argument to -v: letters, digits and - _ + . (e.g. "en-us", "de+f3").
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.-]{0,63}")
# espeak-ng marks a switch to another language's rules as "(fr)…(en)": not phonemes.
_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")
# A NUL ends espeak-ng's reading early; other control characters mean nothing to it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def phonemize(text: str, voice: str, *, timeout: float = TIMEOUT_S) -> list[str]:
    """One IPA phoneme string per sentence of `text`, punctuation kept (Piper's input).

    `voice` is espeak-ng's voice (a Piper config's espeak.voice). Raises EngineError when
    espeak-ng is missing (with the install command), fails, or times out; InvalidAudio for a
    text over MAX_TEXT_CHARS.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidAudio(
            f"the text is longer than the {MAX_TEXT_CHARS} characters owl phonemizes"
        )
    clauses = split_clauses(_CONTROL.sub(" ", text))
    spoken = [clause.text for clause in clauses if clause.text]
    if not spoken:
        return []
    # One run for the whole text; a blank line between clauses makes espeak-ng end each on
    # a line of its own. Where its clauses and owl's differ in number (a rule owl does not
    # follow), each clause is phonemized alone: slower, never misaligned.
    lines = _espeak("\n\n".join(spoken), voice, timeout)
    if len(lines) != len(spoken):
        log.debug("espeak-ng gave %d clauses for owl's %d: one run each", len(lines), len(spoken))
        lines = [" ".join(_espeak(piece, voice, timeout)) for piece in spoken]
    return _sentences(clauses, iter(lines))


def _sentences(clauses: list[Clause], lines: Iterator[str]) -> list[str]:
    sentences: list[str] = []
    current = ""
    for clause in clauses:
        if clause.text:
            phonemes = _LANGUAGE_SWITCH.sub("", next(lines)).strip()
            if phonemes:
                # Piper joins a sentence's clauses with a space after each clause's mark.
                current += (" " if current else "") + phonemes + clause.mark
        if clause.ends_sentence and current:
            sentences.append(current)
            current = ""
    if current:
        sentences.append(current)
    return sentences


def _espeak(text: str, voice: str, timeout: float) -> list[str]:
    if not VOICE_NAME.fullmatch(voice):
        raise EngineError(f"{voice!r} is not an espeak-ng voice name (like 'en-us')")
    program = shutil.which(ESPEAK)
    if program is None:
        raise EngineError(
            f"speaking needs the espeak-ng program, which is not installed: {INSTALL_HINT}"
        )
    command = [program, "-q", "--ipa", "-b", "1", "-v", voice, "--stdin"]
    try:
        done = subprocess.run(
            command, input=text.encode("utf-8"), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise EngineError(
            f"espeak-ng did not finish within {timeout:g} s{_said(err.stderr)}"
        ) from None
    except OSError as err:
        raise EngineError(f"cannot run espeak-ng ({program}): {err}") from None
    if done.returncode != 0:
        raise EngineError(f"espeak-ng failed (exit {done.returncode}){_said(done.stderr)}")
    out = done.stdout.decode("utf-8", errors="replace").rstrip("\n")
    return out.split("\n") if out else []


def _said(stderr: bytes | None) -> str:
    message = (stderr or b"").decode("utf-8", errors="replace").strip()
    return f": {message[:500]}" if message else ""


def phoneme_ids(phonemes: str, id_map: Mapping[str, Sequence[int]]) -> list[int]:
    """A sentence's phonemes as the voice's ids: BOS, each known phoneme's ids and the pad,
    EOS. Phonemes the map lacks are skipped (a debug log counts them)."""
    missing = [mark for mark in (BOS, EOS, PAD) if mark not in id_map]
    if missing:
        raise EngineError(f"the voice's phoneme_id_map lacks {', '.join(map(repr, missing))}")
    pad = list(id_map[PAD])
    ids = [*id_map[BOS], *pad]
    unknown: dict[str, int] = {}
    for phoneme in unicodedata.normalize("NFD", phonemes):
        known = id_map.get(phoneme)
        if known is None:
            unknown[phoneme] = unknown.get(phoneme, 0) + 1
            continue
        ids.extend(known)
        ids.extend(pad)
    ids.extend(id_map[EOS])
    if unknown:
        log.debug("skipped %d phonemes the voice has no id for: %r", sum(unknown.values()), unknown)
    return ids
