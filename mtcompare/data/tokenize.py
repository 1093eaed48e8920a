"""The one shared preprocessor: normalise, tokenise, case, and the inverse.

Both systems see exactly the same tokens, so any difference in their scores
comes from the models, not from preprocessing. :class:`Preprocessor` does,
for one language:

``encode``
    Unicode normalisation, Moses-compatible tokenisation (sacremoses, with
    curly apostrophes handled like ASCII ones so that "God’s" becomes
    ``God ’s`` as Moses makes ``God 's``), then truecasing (Koehn's
    ``truecase.perl`` idea: only a sentence-initial word is changed, to the
    form it most often takes inside sentences; a word written in capitals
    only, such as the second word of the Reina-Valera's chapter openings
    "Y ACONTECIÓ", is changed wherever it stands, to its usual form when one
    was seen) or lowercasing.
``decode``
    the inverse: recasing (capitalise sentence starts) and detokenisation.
    A line's first word stays in lower case when training lines that start
    with that word mostly start in lower case: Bible verses and subtitles
    often continue a sentence from the line before ("who made heaven and
    earth,"), and a recaser that always capitalises gets all of those
    wrong (109 of the 1,288 Bible test references start in lower case).

Detokenisation is learned, not hand-written. Moses' detokeniser has fixed
rules per language and mangles the curly quotes of the World English Bible
(a tokenise-detokenise round trip of the raw test references scores only
94.1 BLEU against the originals). Here, while training, every punctuation
token records whether it touched its left and right neighbour in the raw
training text; ``decode`` then joins two tokens without a space when the
left one usually attaches to the right or the right one to the left. Quotes
that do not say their direction (ASCII ``"``) alternate between opening and
closing, as in Moses.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from sacremoses import MosesTokenizer

from mtcompare.data.clean import normalize_text
from mtcompare.errors import MtcError
from mtcompare.fileio import write_text

CASE_MODES = ("truecase", "lowercase", "none")

# A curly apostrophe inside a word ("God’s", "isn’t") is an apostrophe, not a
# closing quote; sacremoses only knows the ASCII one, so it is swapped in for
# tokenisation and swapped back afterwards.
_INNER_APOSTROPHE = re.compile(r"(?<=\w)’(?=\w)")
_APOSTROPHES = ("'", "’")

# Tokens after which a new sentence starts, for truecasing and recasing.
_SENTENCE_END = {".", "!", "?"}
# Tokens that may stand before the first word of a sentence.
_SENTENCE_OPENERS = {"“", "‘", '"', "'", "(", "[", "¿", "¡", "«", "—"}
# Quotes whose direction the character does not tell.
_UNDIRECTED_QUOTES = {'"'}
# Spanish opening question and exclamation marks: Unicode calls them Po.
_INVERTED_MARKS = {"¿", "¡"}
# Attachment learned from fewer occurrences than this is not trusted.
_MIN_ATTACH_COUNT = 2
# A word must start this many training lines before its line-start case is learned.
_MIN_LINE_START_COUNT = 3


@dataclass
class _Attachment:
    """How often a token touched its word neighbours in the raw training text."""

    left_seen: int = 0  # occurrences with a word before it
    left: int = 0  # ... of which with no space between them
    right_seen: int = 0  # occurrences with a word after it
    right: int = 0  # ... of which with no space between them


@dataclass
class Preprocessor:
    """Shared normalisation, tokenisation and case handling for one language."""

    lang: str
    case: str = "truecase"
    # lowercased word -> its most frequent form inside sentences
    truecase_forms: dict[str, str] = field(default_factory=dict)
    # punctuation token -> (attaches to the left, attaches to the right)
    attachment: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    # whether the training text starts its sentences with a capital letter
    capitalized_starts: bool = True
    # lowercased words that start training lines in lower case more often than not
    lowercase_line_starts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.case not in CASE_MODES:
            raise MtcError(
                f"unknown case mode {self.case!r}; valid: {', '.join(CASE_MODES)}"
            )
        self._tokenizer = MosesTokenizer(lang=self.lang)

    # ---- training -------------------------------------------------------

    @classmethod
    def train(
        cls,
        lang: str,
        lines: Sequence[str],
        case: str = "truecase",
        tokens: Sequence[Sequence[str]] | None = None,
    ) -> "Preprocessor":
        """Learn truecasing forms and punctuation attachment from raw lines.

        ``tokens`` may pass ``[pre.tokenize(line) for line in lines]`` when
        the caller already has it, to avoid tokenising twice.
        """
        preprocessor = cls(lang=lang, case=case)
        if tokens is None:
            tokens = [preprocessor.tokenize(line) for line in lines]
        preprocessor.truecase_forms = _learn_truecase_forms(tokens)
        preprocessor.capitalized_starts = _starts_capitalized(tokens)
        preprocessor.lowercase_line_starts = _learn_lowercase_line_starts(tokens)
        preprocessor.attachment = _learn_attachment(
            (normalize_text(line) for line in lines), tokens
        )
        return preprocessor

    # ---- forward: raw text -> tokens -------------------------------------

    def encode(self, text: str) -> list[str]:
        """Raw text to the tokens both systems train and translate on."""
        return self.apply_case(self.tokenize(text))

    def tokenize(self, text: str) -> list[str]:
        """Normalise and tokenise, keeping the case as written."""
        text = normalize_text(text)
        if not text:
            return []
        apostrophes = [char for char in text if char in _APOSTROPHES]
        tokens = self._tokenizer.tokenize(
            _INNER_APOSTROPHE.sub("'", text), escape=False, aggressive_dash_splits=False
        )
        tokens = _restore_apostrophes(tokens, apostrophes)
        return [piece for token in tokens for piece in _split_bars(token)]

    def apply_case(self, tokens: Sequence[str]) -> list[str]:
        """Truecase or lowercase a tokenised sentence, per ``self.case``."""
        if self.case == "lowercase":
            return [token.lower() for token in tokens]
        if self.case == "none":
            return list(tokens)
        forms = self.truecase_forms
        cased = [
            forms.get(token.lower(), token) if _is_all_capitals(token) else token
            for token in tokens
        ]
        for index in _sentence_starts(cased):
            word = cased[index]
            cased[index] = forms.get(word.lower(), word)
        return cased

    # ---- inverse: tokens -> raw text -------------------------------------

    def decode(self, tokens: Sequence[str]) -> str:
        """Tokens (as a system outputs them) back to raw text."""
        return self.detokenize(self.recase(tokens))

    def recase(self, tokens: Sequence[str]) -> list[str]:
        """Capitalise the first word of each sentence, where the language does.

        The line's first word is left as it is when it is one that training
        lines mostly start in lower case. A no-op for case 'none' and for
        text whose training side does not start sentences with capitals.
        """
        if self.case == "none" or not self.capitalized_starts:
            return list(tokens)
        cased = list(tokens)
        for number, index in enumerate(_sentence_starts(cased)):
            word = cased[index]
            if number == 0 and word.lower() in self.lowercase_line_starts:
                continue
            cased[index] = word[:1].upper() + word[1:]
        return cased

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Join tokens, leaving out the spaces that tokenisation put in."""
        pieces: list[str] = []
        quote_open: dict[str, bool] = defaultdict(bool)
        attach_next = True  # nothing before the first token
        for token in tokens:
            attach_left, attach_right = self._attaches(token)
            if token in _UNDIRECTED_QUOTES:
                opening = not quote_open[token]
                quote_open[token] = opening
                attach_left, attach_right = (not opening, opening)
            if pieces and not (attach_next or attach_left):
                pieces.append(" ")
            pieces.append(token)
            attach_next = attach_right
        return "".join(pieces)

    def _attaches(self, token: str) -> tuple[bool, bool]:
        learned = self.attachment.get(token)
        return learned if learned is not None else _default_attachment(token)

    # ---- persistence -----------------------------------------------------

    def save(self, path: str | Path) -> None:
        record = {
            "lang": self.lang,
            "case": self.case,
            "truecase_forms": self.truecase_forms,
            "attachment": {token: list(flags) for token, flags in self.attachment.items()},
            "capitalized_starts": self.capitalized_starts,
            "lowercase_line_starts": sorted(self.lowercase_line_starts),
        }
        write_text(path, json.dumps(record, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Preprocessor":
        path = Path(path)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                lang=record["lang"],
                case=record["case"],
                truecase_forms=record["truecase_forms"],
                attachment={
                    token: (bool(left), bool(right))
                    for token, (left, right) in record["attachment"].items()
                },
                capitalized_starts=bool(record.get("capitalized_starts", True)),
                # preprocessors saved before this was learned always capitalise
                lowercase_line_starts=_word_set(record.get("lowercase_line_starts", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise MtcError(
                f"{path}: not a preprocessor file ({error}); re-run 'mtcompare prepare'"
            ) from None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_tokenizer", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tokenizer = MosesTokenizer(lang=self.lang)


def _word_set(words: object) -> frozenset[str]:
    """A JSON list of lower-case words as a set; anything else is a TypeError."""
    if not isinstance(words, list) or not all(
        isinstance(word, str) and word == word.lower() for word in words
    ):
        raise TypeError("lowercase_line_starts must be a list of lower-case words")
    return frozenset(words)


def _restore_apostrophes(tokens: list[str], originals: list[str]) -> list[str]:
    """Put back the apostrophe characters of the input, in their order.

    Tokenisation neither adds nor drops apostrophes, so the k-th one in the
    tokens is the k-th one of the text.
    """
    if "’" not in originals:
        return tokens
    remaining = iter(originals)
    restored = []
    for token in tokens:
        if "'" in token or "’" in token:
            token = "".join(
                next(remaining, char) if char in _APOSTROPHES else char for char in token
            )
        restored.append(token)
    return restored


def _split_bars(token: str) -> list[str]:
    """Make every ``|`` a token of its own, so ``|||`` never appears in a line."""
    if "|" not in token or token == "|":
        return [token]
    return [piece for piece in re.split(r"(\|)", token) if piece]


def _is_word(token: str) -> bool:
    return any(unicodedata.category(char)[0] in "LN" for char in token)


def _sentence_starts(tokens: Sequence[str]) -> list[int]:
    """Indices of the first word of each sentence in a tokenised line."""
    starts = []
    at_start = True
    for index, token in enumerate(tokens):
        if at_start and _is_word(token):
            starts.append(index)
            at_start = False
        elif token in _SENTENCE_END:
            at_start = True
        elif at_start and token not in _SENTENCE_OPENERS:
            at_start = False
    return starts


def _starts_capitalized(corpus: Iterable[Sequence[str]]) -> bool:
    """Do more sentences start with an upper-case letter than with a lower-case one?"""
    upper = lower = 0
    for tokens in corpus:
        for index in _sentence_starts(tokens):
            first = tokens[index][:1]
            upper += first.isupper()
            lower += first.islower()
    return upper >= lower


def _learn_lowercase_line_starts(corpus: Iterable[Sequence[str]]) -> frozenset[str]:
    """Words (lowercased) that start more training lines in lower case than
    capitalised, among those that start at least _MIN_LINE_START_COUNT lines."""
    upper: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for tokens in corpus:
        starts = _sentence_starts(tokens)
        if starts:
            word = tokens[starts[0]]
            if word[:1].islower():
                lower[word.lower()] += 1
            elif word[:1].isupper():
                upper[word.lower()] += 1
    return frozenset(
        word
        for word, count in lower.items()
        if count > upper[word] and count + upper[word] >= _MIN_LINE_START_COUNT
    )


def _is_all_capitals(token: str) -> bool:
    """Two or more letters, every one of them upper case ("ACONTECIÓ", not "I")."""
    return len(token) > 1 and token.isupper()


def _learn_truecase_forms(corpus: Iterable[Sequence[str]]) -> dict[str, str]:
    """The most frequent form of each word where it is not sentence-initial.

    Forms in capitals only count just for words never seen otherwise, so that
    "ACONTECIÓ" in a chapter heading does not outvote "aconteció".
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    capitals: dict[str, Counter] = defaultdict(Counter)
    for tokens in corpus:
        initial = set(_sentence_starts(tokens))
        for index, token in enumerate(tokens):
            if index not in initial and _is_word(token):
                seen = capitals if _is_all_capitals(token) else counts
                seen[token.lower()][token] += 1
    for word, forms in capitals.items():
        counts.setdefault(word, forms)
    return {word: forms.most_common(1)[0][0] for word, forms in counts.items()}


def _learn_attachment(
    texts: Iterable[str], corpus: Iterable[Sequence[str]]
) -> dict[str, tuple[bool, bool]]:
    """For each punctuation token, whether it usually touches its word neighbours.

    Only word neighbours are evidence: in ``.”`` either token could be the
    one that attaches, and ")" is followed by "," so often that counting it
    would make ")" attach to the next word too. A side with too little
    evidence takes the default of the token's Unicode category.
    """
    stats: dict[str, _Attachment] = defaultdict(_Attachment)
    for text, tokens in zip(texts, corpus):
        spans = _token_spans(text, tokens)
        if spans is None:
            continue
        words = [_is_word(token) and token[:1] not in _APOSTROPHES for token in tokens]
        for index, token in enumerate(tokens):
            if words[index]:
                continue
            start, end = spans[index]
            record = stats[token]
            if index > 0 and words[index - 1]:
                record.left_seen += 1
                record.left += text[start - 1] != " "
            if index + 1 < len(tokens) and words[index + 1]:
                record.right_seen += 1
                record.right += text[end] != " "
    return {token: _habit(token, record) for token, record in stats.items()
            if record.left_seen + record.right_seen >= _MIN_ATTACH_COUNT}


def _habit(token: str, record: _Attachment) -> tuple[bool, bool]:
    """(attaches left, attaches right) from evidence, else from the default."""
    default_left, default_right = _default_attachment(token)
    left = (record.left * 2 > record.left_seen if record.left_seen >= _MIN_ATTACH_COUNT
            else default_left)
    right = (record.right * 2 > record.right_seen if record.right_seen >= _MIN_ATTACH_COUNT
             else default_right)
    return (left, right)


def _default_attachment(token: str) -> tuple[bool, bool]:
    """Opening brackets and quotes attach right (Unicode Ps, Pi, and ¿ ¡), closing
    ones and sentence punctuation left (Pe, Pf, Po)."""
    if token[:1] in _APOSTROPHES and token[1:].isalpha():
        return (True, False)  # a clitic such as 's or ’ll
    if len(token) != 1:
        return (False, False)
    category = unicodedata.category(token)
    if category in ("Ps", "Pi") or token in _INVERTED_MARKS:
        return (False, True)
    if category in ("Pe", "Pf", "Po"):
        return (True, False)
    return (False, False)


def _token_spans(text: str, tokens: Sequence[str]) -> list[tuple[int, int]] | None:
    """Character span of each token in ``text``; None if they cannot be found."""
    spans = []
    position = 0
    for token in tokens:
        start = text.find(token, position)
        if start < 0 or text[position:start].strip():
            return None
        spans.append((start, start + len(token)))
        position = start + len(token)
    return spans
