"""Word alignment with IBM Model 1, trained by expectation maximisation.

IBM Model 1 (Brown et al. 1993, "The Mathematics of Statistical Machine
Translation: Parameter Estimation", section 4.1) explains a target sentence
f_1 .. f_m as generated from a source sentence e_1 .. e_l plus a NULL word e_0.
Each target word f_j picks a source position a_j uniformly and is then drawn
from the translation table t(f_j | e_{a_j}). So, given t, the alignment of one
target word is independent of the others:

    P(a_j = i | e, f) = t(f_j | e_i) / sum_{i'=0..l} t(f_j | e_i')

EM alternates two steps. The E-step adds this posterior to count(f_j, e_i) for
every target token and every source position, so a word that occurs twice in a
sentence contributes twice (Brown et al. 1993, eq. 12). The M-step sets
t(f | e) = count(f, e) / sum_f' count(f', e). Training starts from t uniform
over the target words that co-occur with each source word.

The E-step here has no per-word Python loop. The corpus is cut into chunks of
sentences; for each chunk, flat numpy arrays list every (sentence, target
position, source position) link, each link carrying the id of its
co-occurring (source word, target word) pair. One iteration then gathers t for
all links, sums it per target token with ``np.add.reduceat``, divides, and
scatters the posteriors onto the pair counts with ``np.bincount``. The pair ids
of each chunk are computed once and reused in every iteration.

The translation table is sparse: ``pair_keys`` holds, sorted, one integer key
per co-occurring pair (``source_id * key_base + target_id``) and
``pair_probabilities`` the matching t values; a lookup is a binary search.

This module is also the entry point for word alignment as the SMT pipeline and
``mtcompare align`` use it. ``align_both_ways`` trains one model per direction,
IBM Model 1 alone or IBM Model 1 followed by the HMM alignment model
(``mtcompare.smt.hmm``, Vogel, Ney & Tillmann 1996), takes each direction's
Viterbi alignment and symmetrises the two (``mtcompare.smt.symmetrize``).
``train_alignment_models`` keeps the two trained models, which
``save_alignment_model`` writes to a directory (one compressed ``.npz`` per
direction and ``alignment.json``, written last) and ``load_alignment_model``
reads back to align new text.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open, write_text
from mtcompare.progress import progress
from mtcompare.smt.hmm import HMMModel, train_hmm, viterbi_alignments
from mtcompare.smt.symmetrize import symmetrize

logger = logging.getLogger(__name__)

NULL_WORD = "<null>"

# A chunk holds at most this many links (target tokens x source positions),
# so the per-chunk float arrays stay near 30 MB each.
LINKS_PER_CHUNK = 1 << 22


@dataclass(eq=False)
class IBMModel1:
    """A trained IBM Model 1 translation table t(target word | source word).

    ``source_vocab`` maps words to ids, with id 0 the NULL word ``"<null>"``.
    ``pair_keys`` is sorted and holds ``source_id * key_base + target_id`` for
    every pair of words that co-occurred in training; ``pair_probabilities``
    holds t(target | source) for the same pairs. Pairs not listed have t = 0.
    """

    source_vocab: dict[str, int]
    target_vocab: dict[str, int]
    pair_keys: np.ndarray  # (n_pairs,) int64, sorted
    pair_probabilities: np.ndarray  # (n_pairs,) float64

    @property
    def key_base(self) -> int:
        """Multiplier of the source id in a pair key.

        One more than the target vocabulary, so that an unknown target word can
        take the id ``len(target_vocab)`` without colliding with a real pair.
        """
        return len(self.target_vocab) + 1

    def probability(self, source_word: str | None, target_word: str) -> float:
        """t(target_word | source_word); ``None`` is the NULL word; 0 if unseen."""
        source_id = self.source_vocab.get(
            NULL_WORD if source_word is None else source_word
        )
        target_id = self.target_vocab.get(target_word)
        if source_id is None or target_id is None:
            return 0.0
        keys = np.array([source_id * self.key_base + target_id], dtype=np.int64)
        return float(self._lookup(keys)[0])

    def viterbi_alignment(
        self, source: Sequence[str], target: Sequence[str]
    ) -> set[tuple[int, int]]:
        """Links (source index, target index) of each target word's best source word.

        Each target word is linked to the source position with the highest
        t(target | source); links to NULL are left out. Ties go to the earliest
        position, NULL first, so a target word never seen in training stays
        unaligned.
        """
        return _viterbi_alignments(self, [source], [target])[0]

    def _lookup(self, keys: np.ndarray) -> np.ndarray:
        """t for each pair key; 0 for keys of pairs that never co-occurred."""
        if len(self.pair_keys) == 0:
            return np.zeros(len(keys))
        positions = np.searchsorted(self.pair_keys, keys)
        positions = np.minimum(positions, len(self.pair_keys) - 1)  # (n_keys,)
        found = self.pair_keys[positions] == keys
        return np.where(found, self.pair_probabilities[positions], 0.0)


def train_ibm1(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    iterations: int = 5,
    *,
    direction: str = "source->target",
) -> IBMModel1:
    """Train t(target | source) by ``iterations`` rounds of EM.

    ``direction`` only names the model in log lines, e.g. ``"es->en"``.
    """
    _check_parallel(source, target)
    source_vocab = _build_vocab(source, first=NULL_WORD)
    target_vocab = _build_vocab(target)
    corpus = _EncodedCorpus.encode(source, target, source_vocab, target_vocab)
    key_base = len(target_vocab) + 1

    start = time.monotonic()
    pair_keys, chunks = _index_pairs(corpus, key_base)
    logger.info(
        "IBM Model 1 %s: %s sentence pairs, %s links, %s co-occurring word pairs "
        "indexed in %.1f s",
        direction,
        f"{len(source):,}",
        f"{sum(len(chunk.pair_ids) for chunk in chunks):,}",
        f"{len(pair_keys):,}",
        time.monotonic() - start,
    )

    source_of_pair = pair_keys // key_base  # (n_pairs,)
    probabilities = _uniform_over_cooccurring(source_of_pair, len(source_vocab))
    for iteration in progress(
        range(1, iterations + 1),
        total=iterations,
        desc=f"IBM Model 1 {direction}",
        unit="iterations",
    ):
        start = time.monotonic()
        counts, log_likelihood = _expected_counts(chunks, probabilities)
        probabilities = _normalise_per_source(counts, source_of_pair, len(source_vocab))
        perplexity = math.exp(-log_likelihood / max(corpus.target_tokens, 1))
        logger.info(
            "IBM Model 1 %s iteration %d/%d: %s pairs in %.1f s, perplexity %.1f",
            direction,
            iteration,
            iterations,
            f"{len(source):,}",
            time.monotonic() - start,
            perplexity,
        )
    return IBMModel1(source_vocab, target_vocab, pair_keys, probabilities)


def align_corpus(
    model: IBMModel1 | HMMModel,
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
) -> list[set[tuple[int, int]]]:
    """The Viterbi alignment of every sentence pair, as in ``viterbi_alignment``."""
    _check_parallel(source, target)
    start = time.monotonic()
    if isinstance(model, HMMModel):
        alignments = viterbi_alignments(model, source, target)
    else:
        alignments = _viterbi_alignments(model, source, target)
    seconds = time.monotonic() - start
    logger.info(
        "aligned %s sentence pairs in %.1f s, %s pairs/s, %s links",
        f"{len(source):,}",
        seconds,
        f"{len(source) / max(seconds, 1e-9):,.0f}",
        f"{sum(map(len, alignments)):,}",
    )
    return alignments


def _viterbi_alignments(
    model: IBMModel1,
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
) -> list[set[tuple[int, int]]]:
    corpus = _EncodedCorpus.encode(
        source, target, model.source_vocab, model.target_vocab
    )
    alignments: list[set[tuple[int, int]]] = []
    for chunk in corpus.chunks():
        links = chunk.links(model.key_base)
        probabilities = model._lookup(links.pair_keys)  # (n_links,)
        best_source = _first_maximum_per_group(probabilities, links.group_starts)
        alignments.extend(_alignment_sets(chunk, best_source))
    return alignments


# ---------------------------------------------------------------- encoding


def _check_parallel(
    source: Sequence[Sequence[str]], target: Sequence[Sequence[str]]
) -> None:
    if len(source) != len(target):
        raise ValueError(
            f"source and target corpora differ in length "
            f"({len(source)} vs {len(target)} sentences)"
        )


def _build_vocab(
    corpus: Sequence[Sequence[str]], first: str | None = None
) -> dict[str, int]:
    """Word -> id in order of first occurrence, optionally with ``first`` as id 0."""
    vocab: dict[str, int] = {} if first is None else {first: 0}
    for sentence in corpus:
        for word in sentence:
            if word not in vocab:
                vocab[word] = len(vocab)
    return vocab


@dataclass
class _Links:
    """Every (target token, source position) link of a chunk, grouped by target token.

    The links of one target token are contiguous, source position ascending,
    NULL first; ``group_starts`` gives where each target token's links begin.
    """

    pair_keys: np.ndarray  # (n_links,) int64
    group_starts: np.ndarray  # (n_target_tokens,) int64


@dataclass
class _Chunk:
    """A run of sentence pairs as flat id arrays; source sentences start with NULL."""

    source_ids: np.ndarray  # (n_source_tokens + n_sentences,) int64
    source_lengths: np.ndarray  # (n_sentences,) int64, NULL included
    target_ids: np.ndarray  # (n_target_tokens,) int64
    target_lengths: np.ndarray  # (n_sentences,) int64

    def links(self, key_base: int) -> _Links:
        """Every target token paired with every source position of its sentence.

        Target token k of the chunk gets a group of links, one per source
        position of its sentence (NULL included); link r of that group points
        at source token ``source_starts[sentence] + r``.
        """
        group_sizes = np.repeat(self.source_lengths, self.target_lengths)  # (n_tokens,)
        group_starts = np.cumsum(group_sizes) - group_sizes
        source_starts = np.cumsum(self.source_lengths) - self.source_lengths
        # (n_tokens,) where the source sentence of each target token begins
        token_source_start = np.repeat(source_starts, self.target_lengths)
        n_links = int(group_sizes.sum())

        # link index minus its group start is the source position inside the sentence
        source_token = np.arange(n_links) + np.repeat(
            token_source_start - group_starts, group_sizes
        )  # (n_links,)
        source_word = self.source_ids[source_token]  # (n_links,)
        target_word = np.repeat(self.target_ids, group_sizes)  # (n_links,)
        return _Links(source_word * key_base + target_word, group_starts)


@dataclass
class _EncodedCorpus:
    """A parallel corpus as id arrays; every source sentence starts with NULL (id 0)."""

    source_ids: np.ndarray
    source_lengths: np.ndarray
    target_ids: np.ndarray
    target_lengths: np.ndarray

    @property
    def target_tokens(self) -> int:
        return len(self.target_ids)

    @classmethod
    def encode(
        cls,
        source: Sequence[Sequence[str]],
        target: Sequence[Sequence[str]],
        source_vocab: dict[str, int],
        target_vocab: dict[str, int],
    ) -> "_EncodedCorpus":
        """Map words to ids; a word missing from a vocabulary gets ``len(vocab)``.

        That id is in no pair key (see ``IBMModel1.key_base``), so its t is 0.
        """
        unknown_source, unknown_target = len(source_vocab), len(target_vocab)
        source_ids = [
            word_id
            for sentence in source
            for word_id in (
                0,
                *(source_vocab.get(word, unknown_source) for word in sentence),
            )
        ]
        target_ids = [
            target_vocab.get(word, unknown_target)
            for sentence in target
            for word in sentence
        ]
        return cls(
            np.array(source_ids, dtype=np.int64),
            np.array([len(sentence) + 1 for sentence in source], dtype=np.int64),
            np.array(target_ids, dtype=np.int64),
            np.array([len(sentence) for sentence in target], dtype=np.int64),
        )

    def chunks(self) -> Iterator[_Chunk]:
        """Consecutive runs of sentences with at most ``LINKS_PER_CHUNK`` links each."""
        links_per_sentence = self.source_lengths * self.target_lengths
        boundaries = _chunk_boundaries(links_per_sentence, LINKS_PER_CHUNK)
        source_ends = np.concatenate([[0], np.cumsum(self.source_lengths)])
        target_ends = np.concatenate([[0], np.cumsum(self.target_lengths)])
        for first, last in zip(boundaries[:-1], boundaries[1:]):
            yield _Chunk(
                self.source_ids[source_ends[first] : source_ends[last]],
                self.source_lengths[first:last],
                self.target_ids[target_ends[first] : target_ends[last]],
                self.target_lengths[first:last],
            )


def _chunk_boundaries(sizes: np.ndarray, budget: int) -> list[int]:
    """Sentence indices that cut ``sizes`` into runs of total size about ``budget``.

    A single sentence larger than the budget gets a chunk of its own.
    """
    boundaries = [0]
    running = 0
    for index, size in enumerate(sizes.tolist()):
        if running and running + size > budget:
            boundaries.append(index)
            running = 0
        running += size
    boundaries.append(len(sizes))
    return boundaries


# ---------------------------------------------------------------- training


@dataclass
class _IndexedChunk:
    """The links of one chunk as ids of co-occurring word pairs."""

    pair_ids: np.ndarray  # (n_links,) int32 or int64
    group_starts: np.ndarray  # (n_target_tokens,) int64
    log_uniform: float  # sum over target tokens of log 1/(l + 1), l + 1 with NULL


def _index_pairs(
    corpus: _EncodedCorpus, key_base: int
) -> tuple[np.ndarray, list[_IndexedChunk]]:
    """The sorted keys of all co-occurring pairs, and each chunk's links as pair ids."""
    chunk_keys: list[np.ndarray] = []
    chunk_inverses: list[tuple[np.ndarray, np.ndarray, float]] = []
    for chunk in corpus.chunks():
        links = chunk.links(key_base)
        unique_keys, inverse = np.unique(links.pair_keys, return_inverse=True)
        chunk_keys.append(unique_keys)
        log_uniform = -float(
            np.sum(chunk.target_lengths * np.log(chunk.source_lengths))
        )
        chunk_inverses.append((inverse, links.group_starts, log_uniform))
    pair_keys = _sorted_unique(chunk_keys)
    id_type = np.int32 if len(pair_keys) < 2**31 else np.int64

    chunks = []
    for unique_keys, (inverse, group_starts, log_uniform) in zip(
        chunk_keys, chunk_inverses
    ):
        global_ids = np.searchsorted(pair_keys, unique_keys).astype(id_type)
        chunks.append(_IndexedChunk(global_ids[inverse], group_starts, log_uniform))
    return pair_keys, chunks


def _sorted_unique(arrays: list[np.ndarray]) -> np.ndarray:
    """The distinct values of all ``arrays``, sorted.

    Sorting and dropping repeats is several times faster here than
    ``np.unique`` without ``return_inverse`` on millions of int64 keys.
    """
    if not arrays:
        return np.zeros(0, dtype=np.int64)
    values = np.sort(np.concatenate(arrays))
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _uniform_over_cooccurring(source_of_pair: np.ndarray, n_sources: int) -> np.ndarray:
    """t(f | e) = 1 / (number of target words co-occurring with e)."""
    pairs_per_source = np.bincount(source_of_pair, minlength=n_sources)
    return 1.0 / pairs_per_source[source_of_pair]


def _expected_counts(
    chunks: list[_IndexedChunk], probabilities: np.ndarray
) -> tuple[np.ndarray, float]:
    """E-step: expected pair counts and the corpus log-likelihood under the old t.

    The log-likelihood is sum_j log(sum_i t(f_j | e_i) / (l + 1)), the IBM
    Model 1 likelihood without its constant sentence-length term.
    """
    counts = np.zeros(len(probabilities))
    log_likelihood = 0.0
    for chunk in chunks:
        if len(chunk.group_starts) == 0:
            continue
        link_probabilities = probabilities[chunk.pair_ids]  # (n_links,)
        # (n_tokens,) sum_i t(f_j | e_i) for each target token j
        token_totals = np.add.reduceat(link_probabilities, chunk.group_starts)
        group_sizes = np.diff(np.append(chunk.group_starts, len(link_probabilities)))
        # (n_links,) P(a_j = i | e, f)
        posteriors = link_probabilities / np.repeat(token_totals, group_sizes)
        counts += np.bincount(chunk.pair_ids, weights=posteriors, minlength=len(counts))
        log_likelihood += float(np.sum(np.log(token_totals))) + chunk.log_uniform
    return counts, log_likelihood


def _normalise_per_source(
    counts: np.ndarray, source_of_pair: np.ndarray, n_sources: int
) -> np.ndarray:
    """M-step: t(f | e) = count(f, e) / sum_f' count(f', e)."""
    totals = np.bincount(source_of_pair, weights=counts, minlength=n_sources)
    return counts / totals[source_of_pair]


# ---------------------------------------------------------------- alignment


def _first_maximum_per_group(
    values: np.ndarray, group_starts: np.ndarray
) -> np.ndarray:
    """For each group, the offset inside it of its first largest value."""
    if len(group_starts) == 0:
        return np.zeros(0, dtype=np.int64)
    group_sizes = np.diff(np.append(group_starts, len(values)))
    group_of_value = np.repeat(np.arange(len(group_starts)), group_sizes)  # (n_values,)
    maxima = np.maximum.reduceat(values, group_starts)  # (n_groups,)
    at_maximum = np.flatnonzero(values == maxima[group_of_value])
    groups = group_of_value[at_maximum]
    first_in_group = np.ones(len(at_maximum), dtype=bool)
    first_in_group[1:] = groups[1:] != groups[:-1]
    return at_maximum[first_in_group] - group_starts


def _alignment_sets(
    chunk: _Chunk, best_source: np.ndarray
) -> list[set[tuple[int, int]]]:
    """Turn each target token's best source position (0 = NULL) into link sets."""
    alignments = []
    token = 0
    best = best_source.tolist()
    for target_length in chunk.target_lengths.tolist():
        alignments.append(
            {
                (best[token + position] - 1, position)
                for position in range(target_length)
                if best[token + position] > 0
            }
        )
        token += target_length
    return alignments


# -- both directions, files and evaluation ------------------------------------------


ALIGNMENT_MODELS = ("ibm1", "hmm")

# written last by save_alignment_model: its presence means the directory is complete
MODEL_INFO = "alignment.json"


def align_both_ways(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    iterations: int = 5,
    heuristic: str = "grow-diag-final-and",
    languages: tuple[str, str] = ("source", "target"),
    *,
    model: str = "hmm",
    hmm_iterations: int = 5,
) -> list[set[tuple[int, int]]]:
    """Train ``model`` in both directions; Viterbi alignments, symmetrised.

    ``iterations`` is the number of IBM Model 1 iterations; ``model="hmm"``
    adds ``hmm_iterations`` of the HMM alignment model on top of them.
    """
    models = train_alignment_models(
        source,
        target,
        iterations,
        model=model,
        hmm_iterations=hmm_iterations,
        languages=languages,
    )
    return models.align(source, target, heuristic)


@dataclass(eq=False)
class AlignmentModels:
    """One trained model per direction of a language pair.

    ``forward`` aligns source to target (each target word to one source word),
    ``backward`` target to source. ``kind`` is one of ``ALIGNMENT_MODELS``.
    """

    kind: str
    forward: IBMModel1 | HMMModel
    backward: IBMModel1 | HMMModel
    languages: tuple[str, str]

    def align(
        self,
        source: Sequence[Sequence[str]],
        target: Sequence[Sequence[str]],
        heuristic: str = "grow-diag-final-and",
    ) -> list[set[tuple[int, int]]]:
        """Viterbi alignments both ways, symmetrised with ``heuristic``.

        Links are (source index, target index); the target->source model's
        links are flipped before symmetrisation (Koehn, Och & Marcu 2003).
        """
        forward = align_corpus(self.forward, source, target)
        backward = align_corpus(self.backward, target, source)
        return [
            symmetrize(there, {(i, j) for j, i in back}, heuristic)
            for there, back in zip(forward, backward)
        ]


def train_alignment_models(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    iterations: int = 5,
    *,
    model: str = "hmm",
    hmm_iterations: int = 5,
    languages: tuple[str, str] = ("source", "target"),
) -> AlignmentModels:
    """IBM Model 1 (then, for ``model="hmm"``, the HMM) in each direction."""
    if model not in ALIGNMENT_MODELS:
        raise MtcError(
            f"unknown alignment model {model!r}; valid: {', '.join(ALIGNMENT_MODELS)}"
        )
    src_lang, tgt_lang = languages
    forward = _train_direction(
        source, target, iterations, model, hmm_iterations, f"{src_lang}->{tgt_lang}"
    )
    backward = _train_direction(
        target, source, iterations, model, hmm_iterations, f"{tgt_lang}->{src_lang}"
    )
    return AlignmentModels(model, forward, backward, (src_lang, tgt_lang))


def save_alignment_model(directory: str | Path, models: AlignmentModels) -> None:
    """Write both directions to ``directory`` for ``load_alignment_model``.

    ``forward.npz`` (source->target) and ``backward.npz`` hold the
    vocabularies, the translation table and, for the HMM, the jump weights;
    ``alignment.json``, written last, names the model kind, the languages and
    the HMM's NULL probabilities.
    """
    directory = Path(directory)
    (directory / MODEL_INFO).unlink(missing_ok=True)  # incomplete until rewritten
    src_lang, tgt_lang = models.languages
    info: dict = {"model": models.kind, "languages": [src_lang, tgt_lang]}
    for name, model, direction in (
        ("forward", models.forward, f"{src_lang}->{tgt_lang}"),
        ("backward", models.backward, f"{tgt_lang}->{src_lang}"),
    ):
        with atomic_open(directory / f"{name}.npz", "wb") as stream:
            np.savez_compressed(stream, **_model_arrays(model))
        info[name] = {"direction": direction}
        if isinstance(model, HMMModel):
            info[name]["null_probability"] = model.null_probability
    write_text(directory / MODEL_INFO, json.dumps(info, indent=2) + "\n")


def load_alignment_model(directory: str | Path) -> AlignmentModels:
    """The models ``save_alignment_model`` wrote to ``directory``."""
    directory = Path(directory)
    info_path = directory / MODEL_INFO
    if not info_path.is_file():
        raise MtcError(
            f"{directory}: no {MODEL_INFO}, so not a saved alignment model; save one "
            f"with 'mtcompare align --save-model {directory}'"
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        kind = info["model"]
        if kind not in ALIGNMENT_MODELS:
            raise ValueError(f"unknown model {kind!r}")
        forward, backward = (
            _load_direction(directory / f"{name}.npz", kind, info[name])
            for name in ("forward", "backward")
        )
        src_lang, tgt_lang = info["languages"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise MtcError(
            f"{directory}: damaged alignment model ({error}); save it again with "
            "'mtcompare align --save-model'"
        ) from None
    return AlignmentModels(kind, forward, backward, (str(src_lang), str(tgt_lang)))


def _train_direction(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    iterations: int,
    kind: str,
    hmm_iterations: int,
    direction: str,
) -> IBMModel1 | HMMModel:
    ibm1 = train_ibm1(source, target, iterations, direction=direction)
    if kind == "ibm1":
        return ibm1
    return train_hmm(source, target, hmm_iterations, initial=ibm1, direction=direction)


def _model_arrays(model: IBMModel1 | HMMModel) -> dict[str, np.ndarray]:
    translation = model.translation if isinstance(model, HMMModel) else model
    arrays = {
        "source_words": _encode_words(translation.source_vocab),
        "target_words": _encode_words(translation.target_vocab),
        "pair_keys": translation.pair_keys,
        "pair_probabilities": translation.pair_probabilities,
    }
    if isinstance(model, HMMModel):
        arrays["jump_weights"] = model.jump_weights
    return arrays


def _load_direction(path: Path, kind: str, entry: dict) -> IBMModel1 | HMMModel:
    with np.load(path) as arrays:
        translation = IBMModel1(
            _decode_words(arrays["source_words"]),
            _decode_words(arrays["target_words"]),
            arrays["pair_keys"].astype(np.int64),
            arrays["pair_probabilities"].astype(np.float64),
        )
        jump_weights = arrays["jump_weights"] if kind == "hmm" else None
    if len(translation.pair_keys) != len(translation.pair_probabilities):
        raise ValueError("pair keys and probabilities differ in length")
    if jump_weights is None:
        return translation
    null_probability = float(entry["null_probability"])
    if len(jump_weights) % 2 != 1 or not 0 < null_probability < 1:
        raise ValueError("bad jump weights or NULL probability")
    return HMMModel(translation, jump_weights.astype(np.float64), null_probability)


def _encode_words(vocab: dict[str, int]) -> np.ndarray:
    """A vocabulary as UTF-8 bytes, words in id order, one a line (words have no
    whitespace), so the .npz needs no pickled objects."""
    words = sorted(vocab, key=vocab.__getitem__)
    return np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)


def _decode_words(data: np.ndarray) -> dict[str, int]:
    text = data.tobytes().decode("utf-8")
    words = text.split("\n") if text else []
    return {word: index for index, word in enumerate(words)}


def format_links(alignment: set[tuple[int, int]]) -> str:
    """Pharaoh format: ``0-0 1-2 2-1``, sorted."""
    return " ".join(f"{i}-{j}" for i, j in sorted(alignment))


def parse_links(line: str, where: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(sure, possible) links of a gold line: ``i-j`` is sure, ``i?j`` possible.

    Sure links count as possible too, as in Och & Ney (2003).
    """
    sure, possible = set(), set()
    for link in line.split():
        separator = "-" if "-" in link else "?"
        left, _, right = link.partition(separator)
        if not (left.isascii() and right.isascii() and left.isdigit() and right.isdigit()):
            raise MtcError(f"{where}: {link!r} is not a link; write i-j (sure) or i?j "
                           "(possible) with 0-based source and target positions")
        point = (int(left), int(right))
        possible.add(point)
        if separator == "-":
            sure.add(point)
    return sure, possible


@dataclass(frozen=True)
class AlignmentScores:
    precision: float
    recall: float
    aer: float


def alignment_error_rate(
    predicted: Sequence[set[tuple[int, int]]],
    sure: Sequence[set[tuple[int, int]]],
    possible: Sequence[set[tuple[int, int]]],
) -> AlignmentScores:
    """Precision, recall and AER over a corpus (Och & Ney 2003, section 5).

    precision = |A ∩ P| / |A|, recall = |A ∩ S| / |S|,
    AER = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|), with S ⊆ P.
    """
    predicted_count = sum(len(links) for links in predicted)
    sure_count = sum(len(links) for links in sure)
    hit_sure = sum(len(a & s) for a, s in zip(predicted, sure))
    hit_possible = sum(len(a & (p | s)) for a, s, p in zip(predicted, sure, possible))
    if predicted_count + sure_count == 0:
        raise MtcError("neither the alignment nor the gold standard has any link to score")
    return AlignmentScores(
        precision=hit_possible / predicted_count if predicted_count else 0.0,
        recall=hit_sure / sure_count if sure_count else 0.0,
        aer=1 - (hit_sure + hit_possible) / (predicted_count + sure_count),
    )
