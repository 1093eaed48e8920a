"""Stand-ins for unknown source words: a known word of the same stem.

A phrase-based system copies a word it never saw in training into its
output. For names that is right; for an inflected form of a known word it
is a lost word. The Reina-Valera has many such forms: verbs with enclitic
pronouns ("tomáronse", "pesóle") and tenses of verbs seen only in other
tenses ("restauró" where training has "restaurar"): 2.3% of the Bible test
set's source tokens are unknown, and most of them are forms like these.

Following the idea of backing off from a full word form to its stem when the
form has no phrase-table entry (Yang & Kirchhoff 2006, "Phrase-based backoff
models for machine translation of highly inflected languages", EACL), an
unknown word borrows the phrase-table entries of a *stand-in*: the known word
that shares the longest prefix with it, once both are lowercased and their
accents removed, taking the most frequent word among those that share it.
The shared prefix must be at least ``MIN_PREFIX`` characters and at least
half the unknown word, so "tomáronse" borrows from "tomaron" and "restauró"
from "restaurar", but a short or unrelated word is still copied. Only words
that start with a lower-case letter lend their entries, so names do not; an
unknown capitalised word may borrow ("Pusiéronme" at the start of a verse
borrows from "pusieron"), which on the Bible test set gives 51 capitalised
words a stand-in, 2 of them names ("Moriah" borrows from "moría"). The choice
depends on the word alone, never on its neighbours, so a word is translated
the same way in every line.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from mtcompare.errors import MtcError
from mtcompare.fileio import read_lines, write_lines

# Shortest shared prefix that makes a stand-in: four letters join too many
# unrelated words ("cant-": canto, cantidad).
MIN_PREFIX = 5
# Prefixes are compared up to this many characters, which keeps the index
# linear in the length of a word.
MAX_PREFIX = 30


def normalise(word: str) -> str:
    """Lowercase and without accents: "Tomárónse" -> "tomaronse"."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


class StandIns:
    """Finds the stand-in of an unknown word among the training vocabulary."""

    def __init__(self, vocabulary: Counter[str]) -> None:
        self.vocabulary = vocabulary
        # normalised prefix (MIN_PREFIX characters or more) -> its most frequent
        # word; ties go to the word that comes first in code-point order
        self._by_prefix: dict[str, str] = {}
        for word, count in sorted(vocabulary.items()):
            if not word[:1].islower():
                continue  # names and numbers stand in for nothing
            form = normalise(word)[:MAX_PREFIX]
            for end in range(MIN_PREFIX, len(form) + 1):
                best = self._by_prefix.get(form[:end])
                if best is None or count > vocabulary[best]:
                    self._by_prefix[form[:end]] = word

    @classmethod
    def from_corpus(cls, sentences: Iterable[Sequence[str]]) -> "StandIns":
        return cls(Counter(word for sentence in sentences for word in sentence))

    def stand_in(self, word: str) -> str | None:
        """The known word whose entries ``word`` borrows, or None (copy it)."""
        if word in self.vocabulary:
            return None
        form = normalise(word)
        shortest = max(MIN_PREFIX, -(-len(form) // 2))  # ceil(len / 2) at least
        for end in range(min(len(form), MAX_PREFIX), shortest - 1, -1):
            found = self._by_prefix.get(form[:end])
            if found is not None:
                return found
        return None

    def stand_ins(self, words: Iterable[str]) -> dict[str, str]:
        """Unknown word -> its stand-in, for each of ``words`` that has one."""
        found: dict[str, str] = {}
        for word in set(words):
            replacement = self.stand_in(word)
            if replacement is not None:
                found[word] = replacement
        return found

    def save(self, path: Path) -> None:
        """One ``word<TAB>count`` line per word, most frequent first."""
        write_lines(path, (f"{word}\t{count}" for word, count in
                           sorted(self.vocabulary.items(), key=lambda x: (-x[1], x[0]))))

    @classmethod
    def load(cls, path: Path) -> "StandIns":
        advice = "delete the file and run 'mtcompare train smt' again to rewrite it"
        vocabulary: Counter[str] = Counter()
        for number, line in enumerate(read_lines(path), 1):
            word, tab, count = line.rpartition("\t")
            if not tab or not word or not (count.isascii() and count.isdigit()):
                raise MtcError(f"{path}:{number}: expected 'word<TAB>count'; {advice}")
            if word in vocabulary:
                raise MtcError(f"{path}:{number}: {word!r} is listed twice; {advice}")
            vocabulary[word] = int(count)
        if not vocabulary:
            raise MtcError(f"{path}: no words; {advice}")
        return cls(vocabulary)
