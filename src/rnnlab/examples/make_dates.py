"""Write ``dates.tsv``: dates as people write them (in words) -> ISO dates, for ``rnnlab run seq2seq``.

    python examples/make_dates.py [--pairs 5000] [--seed 0] [--out examples/dates.tsv]
    rnnlab run seq2seq                # trains on the shipped examples/dates.tsv

Each line is ``source<TAB>target``, e.g. ``tuesday, the 5th of march 1991<TAB>1991-03-05``: a
weekday or not, day numbers or ordinal words, full or short month names, in several orders.
"""

from __future__ import annotations

import argparse
import datetime
import random
from pathlib import Path

MONTHS = [datetime.date(2000, m, 1).strftime("%B").lower() for m in range(1, 13)]
ONES = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
TEENS = [
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
]


def ordinal_word(day: int) -> str:
    """1 -> 'first', 21 -> 'twenty-first', 30 -> 'thirtieth'."""
    if day < 10:
        return ONES[day - 1]
    if day < 20:
        return TEENS[day - 10]
    tens = {2: "twenty", 3: "thirty"}[day // 10]
    return (
        {2: "twentieth", 3: "thirtieth"}[day // 10]
        if day % 10 == 0
        else f"{tens}-{ONES[day % 10 - 1]}"
    )


def ordinal_number(day: int) -> str:
    suffix = "th" if 10 <= day % 100 < 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def in_words(date: datetime.date, rng: random.Random) -> str:
    month = MONTHS[date.month - 1]
    month = month[:3] if rng.random() < 0.3 else month
    day = rng.choice([str(date.day), ordinal_number(date.day), ordinal_word(date.day)])
    text = rng.choice(
        [
            f"{month} {day}, {date.year}",
            f"{day} {month} {date.year}",
            f"the {day} of {month} {date.year}",
            f"{month} the {day}, {date.year}",
        ]
    )
    if rng.random() < 0.3:
        text = f"{date.strftime('%A').lower()}, {text}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("dates.tsv"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    first, days = (
        datetime.date(1950, 1, 1),
        (datetime.date(2049, 12, 31) - datetime.date(1950, 1, 1)).days,
    )
    lines = []
    for _ in range(args.pairs):
        date = first + datetime.timedelta(days=rng.randrange(days + 1))
        lines.append(f"{in_words(date, rng)}\t{date.isoformat()}")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} pairs to {args.out}")


if __name__ == "__main__":
    main()
