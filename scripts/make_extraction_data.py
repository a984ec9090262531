"""Generate the extraction demo task: short texts → a fixed JSON shape (data/extraction/).

Each example is a short order confirmation, booking, invoice or event notice; the answer
is `{"name", "date", "city", "amount"}` with the date as YYYY-MM-DD and the amount a
number. Dates and amounts are written in several styles, so the model has to normalise
them, not copy them. The splits are deterministic (seeded) and share no text.

    python scripts/make_extraction_data.py [--out data/extraction] [--train 400] [--eval 100]

Writes train.jsonl and eval.jsonl (chat format: {"messages": [user, assistant]}), and
prompts.txt (the train split's user prompts, one a line: the prompts for `owl distill`).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 7
INSTRUCTION = (
    "Extract the person's name, the date (YYYY-MM-DD), the city and the amount (a number) "
    'from this text. Answer with JSON only: {"name": ..., "date": ..., "city": ..., '
    '"amount": ...} Text: '
)
FIRST = (
    "Anna Bruno Carla David Elena Farid Grace Hiro Ines Jonas Kemal Lena Marco Nadia Omar "
    "Paula Quentin Rosa Sven Tara Umar Vera Wim Yara Zoe Aisha Ben Chloe Diego Emma"
).split()
LAST = (
    "Novak Silva Kowalski Dubois Rossi Tanaka Okafor Larsen Moreau Schmidt Haddad Petrov "
    "Nguyen Costa Fischer Jensen Romero Walsh Becker Ivanova Kim Mendes Sato Horvat Lund"
).split()
CITIES = (
    "Lisbon;Berlin;Oslo;Madrid;Vienna;Dublin;Prague;Warsaw;Lyon;Porto;Geneva;Milan;Krakow;"
    "Seville;Hamburg;Zurich;Ghent;Turin;Bergen;Malmo;Bilbao;Leeds;Nantes;Graz;Cork"
).split(";")
MONTHS = (
    "January February March April May June July August September October November December"
).split()
ITEMS = "a desk lamp;two chairs;a bicycle;a coffee grinder;a rug;a bookshelf;a tent".split(";")
EVENTS = "workshop;concert;wine tasting;book reading;yoga class;chess night;cooking class"
EVENT_KINDS = EVENTS.split(";")

# Each template names its fields; {date} and {amount} are filled in one of several styles.
TEMPLATES = (
    "Order confirmed for {name}: {item}, total {amount}, delivery to {city} on {date}.",
    "Hi {name}, your booking in {city} for {date} is confirmed. Amount charged: {amount}.",
    "Invoice for {name} ({city}), issued {date}. Please pay {amount} within 30 days.",
    "{name} registered for the {event} in {city} on {date}; fee paid {amount}.",
    "Receipt: {amount} received from {name} on {date} at our {city} store.",
    "Reminder: {name}'s {event} takes place on {date} in {city}. Ticket price {amount}.",
    "Shipping notice - {item} for {name}, arriving in {city} {date}, cost {amount}.",
    "Refund of {amount} issued to {name} on {date} (order placed in {city}).",
)


def _date_text(rng: random.Random, year: int, month: int, day: int) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"{MONTHS[month - 1]} {day}, {year}"
    if style == 1:
        return f"{day} {MONTHS[month - 1]} {year}"
    if style == 2:
        return f"{year}-{month:02d}-{day:02d}"
    return f"{day} {MONTHS[month - 1][:3]} {year}"


def _amount(rng: random.Random) -> tuple[str, float | int]:
    """The amount as written, and as the answer has it (an int when it is whole)."""
    cents = rng.choice((0, 0, rng.randrange(1, 100)))
    whole = rng.randrange(5, 2500)
    value: float | int = whole if cents == 0 else round(whole + cents / 100, 2)
    digits = f"{whole:,}" if rng.random() < 0.5 else str(whole)
    written = digits if cents == 0 and rng.random() < 0.5 else f"{digits}.{cents:02d}"
    style = rng.randrange(4)
    if style == 0:
        return f"${written}", value
    if style == 1:
        return f"€{written}", value
    if style == 2:
        return f"{written} EUR", value
    return f"USD {written}", value


def example(rng: random.Random) -> tuple[str, dict[str, object]]:
    """One text and its answer."""
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    city = rng.choice(CITIES)
    year, month, day = rng.randrange(2023, 2027), rng.randrange(1, 13), rng.randrange(1, 29)
    amount_text, amount = _amount(rng)
    text = rng.choice(TEMPLATES).format(
        name=name,
        city=city,
        date=_date_text(rng, year, month, day),
        amount=amount_text,
        item=rng.choice(ITEMS),
        event=rng.choice(EVENT_KINDS),
    )
    answer = {"name": name, "date": f"{year}-{month:02d}-{day:02d}", "city": city, "amount": amount}
    return text, answer


def record(text: str, answer: dict[str, object]) -> dict[str, object]:
    """The chat-format line for one example."""
    return {
        "messages": [
            {"role": "user", "content": INSTRUCTION + text},
            {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)},
        ]
    }


def splits(train: int, evals: int, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """`train` and `evals` records with no text in both."""
    rng = random.Random(seed)
    seen: set[str] = set()
    made: list[dict] = []
    while len(made) < train + evals:
        text, answer = example(rng)
        if text not in seen:
            seen.add(text)
            made.append(record(text, answer))
    return made[:train], made[train:]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    lines = (json.dumps(row, ensure_ascii=False) for row in rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/extraction"))
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    train, evals = splits(args.train, args.eval, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(args.out / "train.jsonl", train)
    _write_jsonl(args.out / "eval.jsonl", evals)
    # One line each: the instruction and the texts have no line breaks.
    prompts = [row["messages"][0]["content"] for row in train]
    (args.out / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    print(f"wrote {len(train)} train, {len(evals)} eval examples to {args.out}")


if __name__ == "__main__":
    main()
