"""Fact overwrite: N question→answer facts, then a quarter corrected, asked back.

The facts are generated in code from templates (people × attributes), with paraphrase templates
per attribute, so the test needs no download:

1. learn N facts ``"What is Ada's favourite colour?" → "Ada's favourite colour is teal."``;
2. correct a random quarter with new answers (the correction asked verbatim, or paraphrased);
3. ask every fact back verbatim and paraphrased (a template never used for writing): accuracy on
   the corrected facts (the newest answer must win) and on the untouched ones.

Methods: recall agents (:class:`agent.model.MemoryAgent`, kind ``recall``, MiniLM encoder) with
the settings under test, and the vector store baseline (every pair kept, nearest question wins,
the most recent on ties).

Examples
--------
>>> facts = make_facts(12, seed=0)
>>> len(facts), facts[0].question.endswith("?"), facts[0].person in facts[0].answer
(12, True, True)
>>> len({f.answer for f in facts}) == 12
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAMES = """Ada Ben Cleo Dev Elif Femi Gus Hana Ivo Jade Kai Lena Milo Nia Omar Pia Quinn Rhea Sami
Tara Uma Vic Wren Xena Yuri Zoe Abel Bea Cyrus Dina Emil Faye Gil Hugo Iris Joel Kira Liam Maya Noah
Olga Pablo Rosa Sven Tess Ugo Vera Walt Yara Zack Alba Boris Carla Dario Edda Felix Greta Hector Ines
Jonas Katja Lars Mira Nils Otto Petra Rafa Selma Timo Ulla Viggo Wanda Yves Zora Anton Bianca Conor
Delia Ezra Flora Gino Helga Igor Juno Kofi Lila Marco Nadia Oscar Paula Rolf Sofia Theo Una Vito Wilma
Xavi Yoko Zeno Amos Beth Ciro Dora""".split()

# attribute: (verbatim question, paraphrases..., answer template, values)
ATTRS: list[tuple[str, list[str], str, list[str]]] = [
    ("What is {p}'s favourite colour?", ["Which colour does {p} like best?",
     "Tell me the colour {p} prefers."], "{p}'s favourite colour is {v}.",
     "teal crimson amber violet olive navy coral ivory scarlet indigo lime maroon".split()),
    ("Where does {p} live?", ["In which city is {p}'s home?", "What city does {p} live in?"],
     "{p} lives in {v}.", "Lisbon Osaka Denver Lagos Hanoi Quito Oslo Perth Tunis Lyon Porto Kyoto".split()),
    ("What is the name of {p}'s pet?", ["What is {p}'s pet called?", "How is {p}'s pet named?"],
     "{p}'s pet is called {v}.", "Biscuit Pepper Mochi Rex Luna Ziggy Noodle Pixel Waffles Tofu Bolt Mango".split()),
    ("What does {p} do for a living?", ["What is {p}'s job?", "Which profession does {p} have?"],
     "{p} works as a {v}.", "nurse pilot baker plumber lawyer chemist teacher welder architect "
     "dentist farmer journalist".split()),
    ("Which sport does {p} play?", ["What sport is {p} into?", "What game does {p} play on weekends?"],
     "{p} plays {v}.", "tennis rugby chess golf hockey squash cricket volleyball badminton "
     "baseball handball polo".split()),
    ("What is {p}'s favourite dish?", ["Which food does {p} love most?", "What meal does {p} like best?"],
     "{p}'s favourite dish is {v}.", "lasagna ramen paella tacos curry sushi risotto goulash falafel "
     "pierogi moussaka pho".split()),
    ("Which instrument does {p} play?", ["What musical instrument does {p} play?",
     "What does {p} play in the band?"], "{p} plays the {v}.",
     "violin cello flute trumpet piano drums harp banjo oboe tuba clarinet accordion".split()),
    ("In which month was {p} born?", ["What is {p}'s birth month?", "When is {p}'s birthday month?"],
     "{p} was born in {v}.", "January February March April May June July August September "
     "October November December".split()),
    ("What car does {p} drive?", ["Which car does {p} own?", "What is {p}'s car?"],
     "{p} drives a {v}.", "Volvo Fiat Tesla Subaru Mazda Skoda Honda Jeep Mini Saab Lada Kia".split()),
    ("Which company does {p} work for?", ["Who is {p}'s employer?", "Where is {p} employed?"],
     "{p} works for {v}.", "Acme Globex Initech Umbrella Hooli Stark Wayne Wonka Cyberdyne Tyrell "
     "Soylent Gringotts".split()),
]


@dataclass(frozen=True)
class Fact:
    person: str
    attr: int
    question: str
    paraphrases: tuple[str, ...]
    answer: str
    value: str


def _fact(person: str, a: int, value: str) -> Fact:
    q, paras, ans, _ = ATTRS[a]
    return Fact(person, a, q.format(p=person), tuple(s.format(p=person) for s in paras),
                ans.format(p=person, v=value), value)


def make_facts(n: int, seed: int = 0) -> list[Fact]:
    """``n`` distinct (person, attribute) facts with random values (n ≤ 1,000)."""
    slots = [(p, a) for p in NAMES for a in range(len(ATTRS))]
    if n > len(slots):
        raise ValueError(f"at most {len(slots)} facts")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(slots), size=n, replace=False)
    return [_fact(slots[i][0], slots[i][1], str(rng.choice(ATTRS[slots[i][1]][3]))) for i in pick]


def corrections(facts: list[Fact], frac: float = 0.25, seed: int = 1) -> dict[int, Fact]:
    """A new value for a random ``frac`` of the facts: ``{index: corrected fact}``."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(facts), size=int(round(frac * len(facts))), replace=False)
    out = {}
    for i in sorted(int(j) for j in idx):
        f = facts[i]
        choices = [v for v in ATTRS[f.attr][3] if v != f.value]
        out[i] = _fact(f.person, f.attr, str(rng.choice(choices)))
    return out


# --------------------------------------------------------------------------- the evaluation

RECALL_CONFIGS: list[dict] = [
    {"rule": "delta", "beta": 1.0},
    {"rule": "delta", "beta": 0.5, "lift_dim": 4096},
    {"rule": "delta", "beta": 1.0, "lift_dim": 4096},
    {"rule": "rls", "ridge": 0.1},
    {"rule": "rls", "ridge": 0.1, "forget": 0.99, "lift_dim": 2048},
]


class _RecallAgent:
    def __init__(self, memory: dict):
        from agent.config import AgentConfig
        from agent.model import MemoryAgent

        self.name = "deltamem recall " + " ".join(f"{k}={v}" for k, v in memory.items())
        self._agent = MemoryAgent(AgentConfig.from_dict({"kind": "recall", "encoder": "minilm",
                                                         "memory": memory}))

    def learn_many(self, questions: list[str], answers: list[str]) -> None:
        self._agent.learn_many(questions, answers)

    def ask(self, questions: list[str]) -> list[str]:
        return [p["label"] for p in self._agent.predict_many(questions)]


class _Store:
    name = "vector store (nearest question, most recent wins)"

    def __init__(self) -> None:
        from agent.backbones.minilm import get_minilm
        from benchmarks.eval_baselines import VectorStore

        self._enc, self._vs = get_minilm(), VectorStore()

    def learn_many(self, questions: list[str], answers: list[str]) -> None:
        self._vs.learn_many(self._enc.encode(questions), answers)

    def ask(self, questions: list[str]) -> list[str]:
        return self._vs.predict_many(self._enc.encode(questions))


def evaluate(method, n: int, corrected_as: str = "verbatim", batch: int = 50, seed: int = 0) -> dict:
    """Accuracy on corrected and untouched facts, asked verbatim and paraphrased."""
    facts = make_facts(n, seed)
    corr = corrections(facts, seed=seed + 1)
    for s in range(0, n, batch):
        part = facts[s : s + batch]
        method.learn_many([f.question for f in part], [f.answer for f in part])
    ci = list(corr)
    for s in range(0, len(ci), batch):
        part = [corr[i] for i in ci[s : s + batch]]
        qs = [f.question if corrected_as == "verbatim" else f.paraphrases[1] for f in part]
        method.learn_many(qs, [f.answer for f in part])
    want = np.array([corr[i].answer if i in corr else f.answer for i, f in enumerate(facts)])
    is_corr = np.array([i in corr for i in range(n)])
    out = {}
    for mode in ("verbatim", "paraphrased"):
        qs = [f.question if mode == "verbatim" else f.paraphrases[0] for f in facts]
        hit = np.array(method.ask(qs)) == want
        out[mode] = (float(hit[is_corr].mean()), float(hit[~is_corr].mean()))
    return out


def run(out: Path, quick: bool = False, configs: list[dict] | None = None) -> dict:
    from benchmarks.eval_common import md_table

    sizes = (200,) if quick else (200, 1000)
    rows, results = [], {}
    for n in sizes:
        for corrected_as in ("verbatim", "paraphrased"):
            methods = [_RecallAgent(c) for c in (configs or RECALL_CONFIGS)] + [_Store()]
            for m in methods:
                r = evaluate(m, n, corrected_as)
                results[(n, corrected_as, m.name)] = r
                rows.append([n, corrected_as, m.name, r["verbatim"][0], r["verbatim"][1],
                             r["paraphrased"][0], r["paraphrased"][1]])
                print(f"  facts N={n} corr={corrected_as:11s} {m.name:60s} {r}", flush=True)
    md = md_table(["N", "correction asked", "method", "verbatim: corrected", "verbatim: untouched",
                   "paraphrased: corrected", "paraphrased: untouched"], rows)
    return {"name": "facts", "markdown": md, "plots": [], "results": results}
