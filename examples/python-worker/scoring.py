"""Tokens and rewards (docs/protocol.md sections 10.1 and 10.4).

Only what this example supports: character tokenizers (the built-in tasks' small models) and the
`arithmetic` task's rewards. Anything else raises RunSpecUnsupported, which the worker reports as
GroupFailed GRPO_ERR_RUN_SPEC for every group it is leased (section 10.5).
"""
import re
from fractions import Fraction


class RunSpecUnsupported(Exception):
    pass


class CharTokenizer:
    """A tokenizer.json whose model is WordLevel over single characters, specials in added_tokens."""

    def __init__(self, tokenizer_json, special_tokens):
        model = (tokenizer_json or {}).get("model") or {}
        if model.get("type") != "WordLevel":
            raise RunSpecUnsupported(f"tokenizer model {model.get('type')!r}: this worker reads character (WordLevel) tokenizers only")
        self.vocab = dict(model["vocab"])
        self.specials = {t["id"] for t in tokenizer_json.get("added_tokens", []) if t.get("special")}
        self.by_id = {i: s for s, i in self.vocab.items()}
        self.unk = self.vocab.get("<unk>")
        self.bos = special_tokens["bosId"]  # None: no BOS
        self.eos = special_tokens["eosId"]
        # every id that ends a completion, EOS first (older learners send no stopIds: EOS alone)
        self.stops = set(special_tokens.get("stopIds") or [self.eos])

    def encode(self, text):
        ids = []
        for ch in text:  # one id per Unicode code point
            i = self.vocab.get(ch, self.unk)
            if i is None:
                raise ValueError(f"character {ch!r} is not in the tokenizer's vocabulary")
            ids.append(i)
        return ids

    def prompt_ids(self, prompt):
        """[BOS] + encode(prompt): no post-processor, BOS exactly once (section 10.1)."""
        return ([] if self.bos is None else [self.bos]) + self.encode(prompt)

    def completion_text(self, ids):
        """The text before the first stop token, special tokens dropped: EOS is never part of it."""
        end = next((k for k, i in enumerate(ids) if i in self.stops), len(ids))
        ids = ids[:end]
        return "".join(self.by_id[i] for i in ids if i not in self.specials)


NUMBER = re.compile(r"^(-?)(\d+)(?:/(\d+))?$")


def parse_number(text):
    """An integer or a/b (nonzero b) as an exact Fraction, else None."""
    m = NUMBER.match(text)
    if m is None or (m.group(3) is not None and int(m.group(3)) == 0):
        return None
    value = Fraction(int(m.group(2)), int(m.group(3) or 1))
    return -value if m.group(1) == "-" else value


def answer_of(meta):
    answer = meta.get("answer") if isinstance(meta, dict) else None
    if not isinstance(answer, str) or parse_number(answer) is None:
        raise ValueError(f"arithmetic meta must be {{answer: '<integer or a/b>'}}, got {meta!r}")
    return answer


def _partial(text, meta):
    a, v = parse_number(answer_of(meta)), parse_number(text)
    if v is None:
        return 0.0
    return max(0.0, float(1 - abs(v - a) / (abs(a) + 1)))


ARITHMETIC = {
    "correct": lambda prompt, text, meta: 1.0 if text == answer_of(meta) else 0.0,
    "format": lambda prompt, text, meta: 0.0 if parse_number(text) is None else 1.0,
    "partial": lambda prompt, text, meta: _partial(text, meta),
}
TASKS = {"arithmetic": ARITHMETIC}


def reward_functions(spec):
    """{name: fn(prompt, text, meta)} for every active reward of the RunSpec, or RunSpecUnsupported."""
    task = spec["task"]
    if task.get("jsOnly"):
        raise RunSpecUnsupported(f"task {task['name']} needs JavaScript (task.jsOnly)")
    known = TASKS.get(task["name"])
    if known is None:
        raise RunSpecUnsupported(f"task {task['name']!r} is not implemented here (only {', '.join(TASKS)})")
    out = {}
    for f in spec["rewards"]["functions"]:
        if f["source"] != "task" or f["scope"] != "completion" or f["name"] not in known:
            raise RunSpecUnsupported(f"reward {f['name']} ({f['source']}, {f['scope']}) is not implemented here")
        out[f["name"]] = known[f["name"]]
    return out
