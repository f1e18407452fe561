"""Sentences static INT8 of a text model calibrates its activation ranges on.

The built-in set is held out: none of it is in the proof sentences (``sentences.py``), so a variant is
never proven on what it was calibrated on. A user passes their own sentences as a registry artifact: a
UTF-8 text file with one sentence per line (``.txt``) or JSON lines with a ``text`` field (``.jsonl``).
"""

from __future__ import annotations

import json

SOURCE = "built-in calibration sentences (held out from the proof sentences)"
DEFAULT_ARTIFACT = "sentences.txt"
MAX_SENTENCES = 10_000
MAX_CHARS = 20_000  # per sentence; longer ones are cut (the tokenizer keeps max_length tokens anyway)


class SentencesRefused(ValueError):
    """The uploaded calibration sentences cannot be used (the message says how to fix them)."""


def parse(payload: bytes, name: str) -> tuple[str, ...]:
    """The sentences in an uploaded artifact: ``.jsonl`` (``{"text": ...}`` per line) or plain lines."""
    try:
        content = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SentencesRefused(
            f"{name} is not UTF-8 text (byte {exc.start} is {payload[exc.start : exc.start + 1]!r}); "
            "upload one sentence per line as UTF-8"
        ) from exc
    lines = [line for line in content.splitlines() if line.strip()]
    if name.endswith(".jsonl"):
        texts = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SentencesRefused(f"{name} line {number} is not JSON: {exc}") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise SentencesRefused(f'{name} line {number} has no string field "text"')
            texts.append(row["text"])
        lines = [t for t in texts if t.strip()]
    if not lines:
        raise SentencesRefused(f"{name} holds no sentences; upload at least one non-empty line")
    if len(lines) > MAX_SENTENCES:
        raise SentencesRefused(f"{name} holds {len(lines)} sentences; at most {MAX_SENTENCES} are used, send fewer")
    return tuple(line[:MAX_CHARS] for line in lines)


CALIBRATION_SENTENCES: tuple[str, ...] = (
    "Where is the nearest train station?",
    "The board approved the merger after months of negotiation.",
    "My laptop battery drains faster than it used to.",
    "A flock of geese flew south over the frozen lake.",
    "Our team lost the semi-final on penalties.",
    "The lecture on medieval architecture was fascinating.",
    "Could you explain how compound interest works?",
    "The printer on the third floor is out of toner again.",
    "Tomatoes grow best in warm, sunny spots with regular watering.",
    "The senator resigned amid allegations of misconduct.",
    "I'm looking for a quiet hotel near the old town.",
    "The startup raised forty million dollars in its latest round.",
    "Rain is expected throughout the weekend in the north.",
    "The surgeon performed the operation in under two hours.",
    "He forgot his umbrella on the bus this morning.",
    "Neural networks learn representations from large amounts of data.",
    "The library extended its opening hours during exams.",
    "Our neighbours adopted a rescue dog last spring.",
    "The price of coffee beans rose after the poor harvest.",
    "What is the difference between a virus and a bacterium?",
    "The jury deliberated for three days before reaching a verdict.",
    "Fresh snow covered the mountain pass overnight.",
    "The app crashes whenever I try to upload a photo.",
    "She has been learning Japanese for two years.",
    "The ferry to the island runs twice a day in winter.",
    "Wind turbines now supply a quarter of the country's power.",
    "Please keep the receipt in case you need to return the item.",
    "The author signed copies of her new novel at the bookstore.",
    "Our internet connection keeps dropping in the evening.",
    "The river burst its banks after a week of heavy rain.",
    "I think the sequel was better than the original film.",
    "The company recalled thousands of cars over a brake defect.",
    "Bake the bread at two hundred degrees for forty minutes.",
    "The telescope captured images of a distant galaxy.",
    "Is it safe to drink tap water here?",
    "The union called a strike over pension cuts.",
    "Kids love feeding the ducks at the pond.",
    "The password must contain at least twelve characters.",
    "Archaeologists uncovered a Roman mosaic beneath the car park.",
    "The meeting has been moved to Wednesday afternoon.",
    "This jacket is warm but far too expensive.",
    "Dolphins communicate with clicks and whistles.",
    "The government announced new rules for short-term rentals.",
    "I need to renew my passport before the trip.",
    "The band played their greatest hits to a sold-out arena.",
    "Lightning struck the old oak tree in the village square.",
    "Customer service resolved my complaint within a day.",
    "The chemical reaction releases heat and a little light.",
    "We ordered pasta, salad and a bottle of red wine.",
    "The marathon route passes through five neighbourhoods.",
    "Scientists are testing a new treatment for malaria.",
    "My flight lands at half past six tomorrow evening.",
    "The painting was sold at auction for a record price.",
    "Traffic on the ring road is moving slowly because of an accident.",
    "How many calories are in a banana?",
    "The prime minister met with leaders of the opposition.",
    "She repaired the bicycle chain with a borrowed tool.",
    "Coral reefs are threatened by warming oceans.",
    "The spreadsheet formula returns an error for empty cells.",
    "I really enjoyed the concert last night!",
    "This product broke after two days, what a waste of money.",
    "The professor's office hours are on Monday mornings.",
    "The cheese shop sells more than two hundred varieties.",
    "A new bike lane opened along the waterfront.",
    "Do you know a good plumber in this area?",
    "The satellite will map the ocean floor in high resolution.",
    "Tickets for the festival sold out within minutes.",
    "He runs five kilometres every morning before work.",
    "The contract expires at the end of the fiscal year.",
    "Autumn leaves turned the hillside red and gold.",
    "THE SYSTEM WILL BE DOWN FOR MAINTENANCE TONIGHT",
    "call me at 555-0199 after 6pm, or email info@example.net",
    "version 2.4.1 fixes issue #1234 (memory leak) — see https://example.com/notes",
    "Prices: $19.99, €17.50, £15.00 and ¥2,400.",
    "Crème brûlée, jalapeño, Ångström and Łódź.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "¿Dónde está la biblioteca?",
    "Das Wetter ist heute schön.",
    "Great job 🎉🎉 see you soon 😊",
    "ok thanks",
    "no",
    "?",
    "The quarterly report shows that revenue from subscriptions grew steadily while hardware sales declined, "
    "which led the board to shift investment towards cloud services, customer support and a new line of "
    "software products aimed at small businesses in Europe and Asia over the next three years.",
    "When the storm finally passed, the villagers came out of their houses to inspect the damage: fallen "
    "trees blocked the main road, the bakery had lost part of its roof, and the old stone bridge, which had "
    "stood for two centuries, was cracked down the middle, so the mayor called for volunteers to help clear "
    "the debris before nightfall.",
    "lorem ipsum " * 150,
)
