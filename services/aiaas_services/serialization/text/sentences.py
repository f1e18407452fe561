"""Fixed held-out sentences the proof of a text model runs on (varied length, casing, punctuation, scripts).

The last ones are deliberately awkward: empty, whitespace, accents, Chinese, emoji, and one far longer than
any model's ``max_length`` so truncation is part of what is proven.
"""

from __future__ import annotations

PROOF_SENTENCES: tuple[str, ...] = (
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "A model service that cannot serve a pretrained transformer is not one people would choose.",
    "How do I reset my password?",
    "The weather today is sunny with a light breeze from the west.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "She plays the violin in the city orchestra every Thursday evening.",
    "This restaurant serves the best pizza I have ever eaten.",
    "The service was slow and the food arrived cold.",
    "Quantum computers use qubits that can be in superposition.",
    "Please send me the quarterly report by Friday.",
    "The cat sat on the mat.",
    "A man is playing a guitar on the street corner.",
    "Two dogs are running through a field of tall grass.",
    "Machine learning models need careful evaluation on held-out data.",
    "I absolutely loved this movie; the acting was superb!",
    "Terrible customer support, I will never buy from them again.",
    "The train to Berlin leaves at 7:45 from platform 3.",
    "Photosynthesis converts light energy into chemical energy.",
    "Can you recommend a good book about the history of Rome?",
    "The committee postponed its decision until next month.",
    "He fixed the leaking kitchen tap with a new washer.",
    "ONNX Runtime executes the graph without Python at serving time.",
    "Children were building sandcastles on the beach.",
    "The new phone has a faster processor and a better camera.",
    "Our flight was delayed by three hours because of fog.",
    "The museum opens at nine and closes at five on weekdays.",
    "Regular exercise improves both physical and mental health.",
    "The recipe calls for two cups of flour and one egg.",
    "Scientists discovered a new species of frog in the rainforest.",
    "What time does the pharmacy close tonight?",
    "The software update fixed several security vulnerabilities.",
    "WHY IS EVERYTHING IN CAPITAL LETTERS",
    "numbers like 3.14159, 42 and 1,000,000 appear here",
    "e-mail: someone@example.com, url: https://example.org/path?q=1",
    "Café, naïve, résumé, Zürich and São Paulo.",
    "北京是中国的首都。",
    "Emoji are text too 🙂👍",
    "",
    "   ",
    "word " * 400,
)
