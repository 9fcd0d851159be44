"""Memory episodes: a history of turns, then a question whose answer is somewhere in it.

Two sources:

- :func:`synthetic_episodes` — dialogues generated in code from a seed: a person tells a partner
  facts about people, places, preferences and dates, some facts later change ("actually, I
  moved to Lisbon"), with small talk in between (as many tokens of it as asked, e.g. 10,000).
  The question asks for one fact; the answer is its latest value.
- :func:`locomo_episodes` — the LoCoMo dev conversations (``../shared/data/locomo_dev.json``;
  an empty list when the file is absent). Each turn's speaker carries its session date
  ("Caroline (8 May, 2023)"), since temporal questions need it. Category 5 (adversarial, no
  answer in the conversation) is left out unless asked for.

Examples
--------
>>> ep = synthetic_episodes(1, seed=0)[0]
>>> ep.answer in " ".join(t for _, t in ep.turns)
True
>>> synthetic_episodes(2, seed=3) == synthetic_episodes(2, seed=3)
True
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

__all__ = ["Episode", "synthetic_episodes", "locomo_episodes", "LOCOMO_PATH", "LOCOMO_CATEGORIES"]

LOCOMO_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                           "locomo_dev.json")
LOCOMO_CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop",
                     5: "adversarial"}


@dataclass
class Episode:
    """A history of ``(speaker, text)`` turns and one question about it."""

    turns: list[tuple[str, str]]
    question: str
    answer: str
    category: str = "fact"
    evidence: list[int] = field(default_factory=list)  # indices of the turns that hold the answer
    conversation: str = ""

    def labels(self) -> list[str]:
        """The turns as the chat agent stores them: ``"speaker: text"``."""
        return [f"{s}: {t}" for s, t in self.turns]


NAMES = ["Maya", "Liam", "Noor", "Ethan", "Sofia", "Kenji", "Amara", "Lucas", "Priya", "Jonas",
         "Elena", "Omar", "Hana", "Mateo", "Zoe", "Ravi", "Clara", "Felix", "Ines", "Tariq"]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Denver", "Kyoto", "Porto", "Dublin", "Austin", "Lyon",
          "Seoul", "Quito", "Perth", "Krakow", "Boston", "Hanoi", "Bergen"]
PETS = ["Biscuit", "Pepper", "Mochi", "Rocket", "Luna", "Waffles", "Ziggy", "Nala", "Bruno", "Olive"]
FOODS = ["ramen", "lasagna", "tacos", "falafel", "paella", "dumplings", "curry", "pancakes", "sushi"]
JOBS = ["nurse", "carpenter", "pilot", "teacher", "chemist", "baker", "lawyer", "designer", "farmer"]
SPORTS = ["tennis", "rowing", "chess", "climbing", "cycling", "fencing", "surfing", "archery"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
COLORS = ["green", "orange", "purple", "teal", "yellow", "crimson", "navy", "silver"]

# attribute: (pool, statement, change statement, question)
FACTS = {
    "city": (CITIES, "I live in {v}.", "Actually, I just moved to {v}.", "Where does {p} live?"),
    "pet": (PETS, "My dog is called {v}.", "We renamed our dog, he is called {v} now.",
            "What is the name of {p}'s dog?"),
    "food": (FOODS, "My favourite food is {v}.", "These days my favourite food is {v}.",
             "What is {p}'s favourite food?"),
    "job": (JOBS, "I work as a {v}.", "I changed jobs, I am a {v} now.", "What is {p}'s job?"),
    "sport": (SPORTS, "I play {v} every weekend.", "I quit that, now I do {v} on weekends.",
              "Which sport does {p} do on weekends?"),
    "birthday": (None, "My birthday is on {v}.", "Sorry, I got it wrong, my birthday is on {v}.",
                 "When is {p}'s birthday?"),
    "color": (COLORS, "My favourite colour is {v}.", "My favourite colour changed to {v}.",
              "What is {p}'s favourite colour?"),
    "friend": (NAMES, "My best friend is {v}.", "My best friend now is {v}.",
               "Who is {p}'s best friend?"),
}
# an older or someone else's value of the same attribute, said close to the fact (distractors)
OLDER = {
    "city": "I used to live in {v}.", "pet": "My old dog was called {v}.",
    "food": "I used to love {v} most.", "job": "I used to work as a {v}.",
    "sport": "I used to play {v}.", "birthday": "People often think my birthday is on {v}.",
    "color": "My favourite colour used to be {v}.", "friend": "My best friend used to be {v}.",
}
SMALL_TALK = [
    "The weather was {adj} today, so I stayed in and read a little.",
    "I watched a {adj} movie last night, the ending surprised me.",
    "Traffic this morning was {adj}, I was almost late for everything.",
    "I tried a new recipe yesterday and it turned out {adj}.",
    "My neighbour's garden looks {adj} this time of year.",
    "I have been listening to a {adj} podcast about old ships.",
    "The coffee at the corner shop was {adj} again.",
    "I cleaned the whole flat on Sunday, it felt {adj}.",
    "I saw a {adj} documentary about whales.",
    "The train was {adj} today, full of tourists with maps.",
]
ADJ = ["great", "strange", "boring", "lovely", "terrible", "quiet", "busy", "funny", "long", "odd"]
REPLIES = ["Nice!", "Oh really? Tell me more.", "Haha, that sounds fun.", "Good to know.",
           "I see.", "That is interesting.", "Wow.", "Makes sense."]


def _value(rng: random.Random, attr: str, pool: list[str] | None, avoid: str | None = None) -> str:
    while True:
        v = f"{rng.randint(1, 28)} {rng.choice(MONTHS)}" if pool is None else rng.choice(pool)
        if v != avoid:
            return v


def _small_talk(rng: random.Random, speaker: str, partner: str) -> list[tuple[str, str]]:
    return [(speaker, rng.choice(SMALL_TALK).format(adj=rng.choice(ADJ))),
            (partner, rng.choice(REPLIES))]


def _add_distractors(ep: Episode, rng: random.Random, attr: str, at: int, person: str,
                     partner: str, prob: float) -> None:
    """Around the asked fact's first statement (turn ``at``): with probability ``prob`` the same
    person states an older value just before it, and (again with ``prob``) the partner states
    their own value of the same attribute just after its reply. Values differ from the answer."""
    pool, stmt, _, _ = FACTS[attr]
    seen = {t for _, t in ep.turns}
    taken = {ep.answer} | {v for v in (pool or []) if any(v in t for t in seen)}

    def fresh() -> str:
        for _ in range(100):
            v = _value(rng, attr, pool)
            if v not in taken:
                taken.add(v)
                return v
        raise RuntimeError("no distinct distractor value")  # pools have ≥ 8 values

    inserts: list[tuple[int, list[tuple[str, str]]]] = []
    if rng.random() < prob:
        inserts.append((at, [(person, OLDER[attr].format(v=fresh())), (partner, rng.choice(REPLIES))]))
    if rng.random() < prob:
        inserts.append((at + 2, [(partner, stmt.format(v=fresh())), (person, rng.choice(REPLIES))]))
    for pos, turns in reversed(inserts):  # later position first: earlier ones stay valid
        ep.turns[pos:pos] = turns
        ep.evidence = [e + len(turns) if e >= pos else e for e in ep.evidence]


def synthetic_episodes(n: int, seed: int = 0, n_facts: int = 3, filler_turns: int = 4,
                       filler_words: int = 0, change_prob: float = 0.3,
                       distractor_prob: float = 0.0) -> list[Episode]:
    """``n`` dialogues, each with ``n_facts`` facts, one asked about at the end.

    Parameters
    ----------
    filler_turns : small-talk exchanges between and after the facts.
    filler_words : when > 0, small talk is added after the last fact until this many words
        (about 1.3 tokens each with SmolLM2's tokenizer) separate it from the question.
    change_prob : probability that the asked fact is restated with a new value later.
    distractor_prob : probability of each distractor next to the asked fact (an older value
        from the same person, the partner's own value of the same attribute); drawn from a
        generator of their own, so the episodes are otherwise those of ``distractor_prob = 0``.
    """
    rng = random.Random(seed)
    drng = random.Random(f"distractors-{seed}")
    out = []
    for _ in range(n):
        person, partner = rng.sample(NAMES, 2)
        attrs = rng.sample(sorted(FACTS), n_facts)
        asked = rng.choice(attrs)
        turns: list[tuple[str, str]] = []
        values: dict[str, str] = {}
        evidence: dict[str, int] = {}
        first: dict[str, int] = {}
        for attr in attrs:
            pool, stmt, _, _ = FACTS[attr]
            values[attr] = _value(rng, attr, pool)
            evidence[attr] = first[attr] = len(turns)
            turns.append((person, stmt.format(v=values[attr])))
            turns.append((partner, rng.choice(REPLIES)))
            for _ in range(rng.randint(0, filler_turns)):
                turns += _small_talk(rng, person, partner)
        category = "fact"
        if rng.random() < change_prob:
            pool, _, change, _ = FACTS[asked]
            values[asked] = _value(rng, asked, pool, avoid=values[asked])
            evidence[asked] = len(turns)
            turns.append((person, change.format(v=values[asked])))
            turns.append((partner, rng.choice(REPLIES)))
            category = "changed"
        words = 0
        while words < filler_words:
            pair = _small_talk(rng, person, partner)
            words += sum(len(t.split()) for _, t in pair)
            turns += pair
        question = FACTS[asked][3].format(p=person)
        ep = Episode(turns, question, values[asked], category, [evidence[asked]])
        if distractor_prob > 0:
            _add_distractors(ep, drng, asked, first[asked], person, partner, distractor_prob)
        out.append(ep)
    return out


def locomo_episodes(path: str = LOCOMO_PATH, include_adversarial: bool = False) -> list[Episode]:
    """One episode per LoCoMo question (the turns list is shared within a conversation)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = []
    for conv in data:
        c = conv["conversation"]
        turns: list[tuple[str, str]] = []
        index: dict[str, int] = {}
        sessions = sorted((int(k.split("_")[1]), k) for k in c
                          if k.startswith("session_") and not k.endswith("date_time"))
        for _, key in sessions:
            date = str(c.get(f"{key}_date_time", "")).split(" on ")[-1]
            for t in c[key]:
                index[t["dia_id"]] = len(turns)
                turns.append((f"{t['speaker']} ({date})", str(t["text"])))
        for qa in conv["qa"]:
            if qa["category"] == 5 and not include_adversarial:
                continue
            answer = str(qa.get("answer", "Not mentioned in the conversation"))
            ev = [index[e] for e in qa.get("evidence", []) if e in index]
            out.append(Episode(turns, str(qa["question"]), answer, LOCOMO_CATEGORIES[qa["category"]],
                               ev, conv["sample_id"]))
    return out
