"""A labelled text table for fine-tuning tests: sentences about three topics, written from templates.

Subjects, verbs and objects are drawn per topic, so the held-out rows are new combinations of words the
training rows used; the label is the topic (majority baseline: one third).
"""

from __future__ import annotations

import csv
import io
import random

TOPICS = {
    "sports": (
        ["The striker", "Our goalkeeper", "The home team", "The coach", "A young sprinter", "The captain"],
        ["scored", "defended", "won", "trained for", "celebrated", "lost"],
        ["the final match", "a penalty kick", "the championship", "the relay race", "the league title", "overtime"],
    ),
    "cooking": (
        ["The chef", "My grandmother", "The baker", "A home cook", "The pastry team", "Our waiter"],
        ["baked", "seasoned", "simmered", "served", "chopped", "tasted"],
        ["the tomato soup", "fresh bread", "a spicy curry", "the garlic butter", "chocolate cake", "roast chicken"],
    ),
    "technology": (
        ["The engineer", "Our startup", "The laptop", "A new chip", "The cloud server", "The developer"],
        ["compiled", "deployed", "updated", "debugged", "encrypted", "benchmarked"],
        ["the source code", "a database cluster", "the firmware", "the mobile app", "a neural network", "the API"],
    ),
}


def rows(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (text, label) rows, the labels balanced."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        label = list(TOPICS)[i % len(TOPICS)]
        subjects, verbs, objects = TOPICS[label]
        out.append((f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.", label))
    return out


def csv_bytes(count: int, seed: int = 0) -> bytes:
    """The rows as a CSV with a text,label header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows(count, seed))
    return buffer.getvalue().encode()
