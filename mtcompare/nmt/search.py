"""Greedy and beam search over the decoder, batched over sentences.

Greedy search takes the most probable piece at every step. Beam search keeps
the ``beam_size`` best partial translations (hypotheses) of each sentence:
at each step every live hypothesis is extended by every piece, and the best
``beam_size`` extensions that do not end the sentence stay live, while
extensions by the end symbol that rank among the best ``beam_size`` become
finished hypotheses (the bookkeeping of Sutskever et al. 2014, section 3.2,
with the top-2k trick used by fairseq so a beam never runs short). All
sentences of a batch are searched together, as one tensor of
sentences x beam hypotheses; a sentence whose search is over leaves the
batch, so a batch costs as much as its sentences still being searched.

Scores. Log-probabilities only fall as a hypothesis grows, so raw scores
favour short output (Koehn & Knowles 2017, "Six Challenges for Neural Machine
Translation", section 3.6). Finished hypotheses are therefore ranked by the
length-normalised score

    score(y) = log P(y | x) / lp(|y|)     (|y| counts the end symbol)

with ``length_normalisation="length"``: lp(n) = n^alpha (alpha = 0 is no
normalisation, alpha = 1 the average log-probability per piece), or
``"gnmt"``: lp(n) = ((5 + n) / 6)^alpha (Wu et al. 2016, "Google's Neural
Machine Translation System", eq. 14). alpha is ``length_penalty``.

Stopping. A sentence's search stops when no live hypothesis can still beat
its N-th best finished one (N = ``n_best``), not when N have finished. That
needs a bound on what a live hypothesis can still reach. Take a live
hypothesis with raw score s after some pieces. s <= 0, being a sum of
log-probabilities. Every translation that grows out of it has a raw score
s' <= s, since each further piece adds a log-probability <= 0, and a length
n <= L + 1, where L is the sentence's maximum output length (after L pieces
only the end symbol is allowed). Its normalised score is

    s' / lp(n) <= s / lp(n) <= s / lp(L + 1),

the first step because lp(n) > 0, the second because s <= 0 and lp is
non-decreasing in n for alpha >= 0 (a non-positive number divided by a
larger positive one is nearer zero). So s / lp(L + 1) bounds the future of
the hypothesis, and the best live hypothesis's bound bounds all of them. A
sentence is done when it has N finished hypotheses and the N-th best scores
at least that bound, when no live hypothesis has a finite score, or at the
maximum length. Continuing could then only add finished hypotheses ranked
below the N-th, so the N best are those a search run to the maximum length
would return. With alpha = 0 the bound is the best live score itself, the
familiar "stop when the best finished beats the best live"; with alpha > 0
the bound is loose and the search runs longer, which is the price of not
losing a longer translation that normalisation prefers.

The maximum output length is ``max_length_ratio * src_len +
max_length_extra`` pieces (end symbol not counted), ``src_len`` counting the
source's end symbol. With ``beam_size=1`` and ``length_penalty=0`` beam
search is greedy search.

Attention weights are not kept during the search (that would cost memory for
every hypothesis of every beam at every step); :func:`attention_matrix`
recomputes them for one chosen translation by running the decoder along it,
which gives the weights the search saw, the decoder being deterministic in
evaluation mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mtcompare.data.subword import BOS_ID, EOS_ID
from mtcompare.errors import MtcError
from mtcompare.nmt.batching import pad
from mtcompare.nmt.model import DecoderState, EncoderOutput, Seq2Seq

LENGTH_NORMALISATIONS = ("length", "gnmt")


@dataclass
class SearchConfig:
    """How translations are searched for."""

    beam_size: int = 5
    length_penalty: float = 1.0  # alpha in log P / lp(|y|)
    max_length_ratio: float = 1.5  # a in max output length = a * src_len + b
    max_length_extra: int = 10  # b
    length_normalisation: str = "length"  # lp(n) = n^alpha; "gnmt": ((5+n)/6)^alpha

    def validate(self) -> None:
        """Raise :class:`MtcError` on the first invalid value."""
        if self.length_normalisation not in LENGTH_NORMALISATIONS:
            raise MtcError(
                f"unknown length_normalisation {self.length_normalisation!r}; "
                f"valid: {', '.join(LENGTH_NORMALISATIONS)}"
            )
        if self.beam_size < 1:
            raise MtcError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.length_penalty < 0:
            raise MtcError(
                "length_penalty (alpha) must be at least 0 (0: no length "
                f"normalisation), got {self.length_penalty}"
            )
        if self.max_length_ratio < 0 or self.max_length_extra < 0:
            raise MtcError(
                "max_length_ratio and max_length_extra must be at least 0, got "
                f"{self.max_length_ratio} and {self.max_length_extra}"
            )

    def length_normaliser(self, length: int) -> float:
        """lp(length): what a raw log-probability is divided by."""
        if self.length_normalisation == "gnmt":
            return ((5 + length) / 6) ** self.length_penalty  # Wu et al. 2016, eq. 14
        return float(length) ** self.length_penalty


@dataclass
class Hypothesis:
    """A finished translation found by beam search."""

    pieces: list[int]  # target ids, end symbol not included
    log_probability: float  # log P(pieces + end symbol | source)
    score: float  # log_probability / lp(len(pieces) + 1): what the search ranks by


def max_output_lengths(
    src_lengths: torch.Tensor, ratio: float, extra: int
) -> torch.Tensor:
    """Most pieces a translation may have (end symbol not counted), per sentence."""
    return (src_lengths.float() * ratio + extra).floor().long().clamp(min=1)


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: torch.Tensor,  # batch x src_len
    src_lengths: torch.Tensor,  # batch
    search: SearchConfig | None = None,
) -> list[list[int]]:
    """Most probable piece at each step; target ids without the end symbol.

    Only the length limits of ``search`` are used.
    """
    search = search or SearchConfig()
    model.eval()
    encoded = model.encode(src, src_lengths)
    state = model.initial_state(encoded)
    limits = max_output_lengths(
        src_lengths, search.max_length_ratio, search.max_length_extra
    )
    batch = src.size(0)
    previous = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    outputs: list[torch.Tensor] = []
    for step in range(int(limits.max()) + 1):
        logits, state, _ = model.decode_step(previous, state, encoded)  # batch x vocab
        logits = _only_end_at_limit(logits, step >= limits)
        tokens = logits.argmax(dim=1).masked_fill(finished, EOS_ID)  # batch
        outputs.append(tokens)
        finished |= tokens == EOS_ID
        if bool(finished.all()):
            break
        previous = tokens
    table = torch.stack(outputs, dim=1).tolist()  # batch x steps
    return [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in table]


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,  # batch x src_len
    src_lengths: torch.Tensor,  # batch
    search: SearchConfig | None = None,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """The ``n_best`` best translations of each sentence, best first.

    A sentence gets fewer only when the model gives every other continuation
    probability zero (no finite score): then it may get none at all.
    """
    search = search or SearchConfig()
    search.validate()
    if not 1 <= n_best <= search.beam_size:
        raise MtcError(
            f"n_best must be between 1 and the beam size ({search.beam_size}), "
            f"got {n_best}; a beam of k keeps k hypotheses"
        )
    model.eval()
    limits = max_output_lengths(
        src_lengths, search.max_length_ratio, search.max_length_extra
    )
    return _BeamSearch(model, src, src_lengths, search, n_best, limits).run()


@torch.no_grad()
def attention_matrix(
    model: Seq2Seq, source: list[int], target: list[int]
) -> torch.Tensor:
    """Attention weights of one translation, (len(target) + 1) x (len(source) + 1).

    ``source`` and ``target`` are piece ids without end symbols. Row i holds
    the weights with which the decoder read the source when it predicted
    target piece i, the last row those for the end symbol; the last column
    is the source's end symbol. Every row sums to one.
    """
    model.eval()
    device = next(model.parameters()).device
    src = torch.tensor([source + [EOS_ID]], device=device)  # 1 x src_len
    encoded = model.encode(src, torch.tensor([src.size(1)], device=device))
    state = model.initial_state(encoded)
    rows = []
    for piece in [BOS_ID] + target:
        previous = torch.tensor([piece], device=device)  # 1
        _, state, weights = model.decode_step(previous, state, encoded)  # 1 x src_len
        rows.append(weights[0])
    return torch.stack(rows)  # tgt_len + 1 x src_len


def _only_end_at_limit(scores: torch.Tensor, at_limit: torch.Tensor) -> torch.Tensor:
    """Leave only the end symbol possible (its score kept, every other piece at
    -inf) in the rows (batch x vocab) that reached their length limit."""
    if not bool(at_limit.any()):
        return scores
    blocked = torch.full_like(scores, float("-inf"))
    blocked[:, EOS_ID] = scores[:, EOS_ID]
    return torch.where(at_limit.unsqueeze(1), blocked, scores)


class _BeamSearch:
    """State of one batched beam search; :meth:`run` steps it to the end."""

    def __init__(
        self,
        model: Seq2Seq,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        search: SearchConfig,
        n_best: int,
        limits: torch.Tensor,
    ):
        self.model = model
        self.search = search
        self.beam_size = search.beam_size
        self.n_best = n_best
        batch, device = src.size(0), src.device
        encoded = model.encode(src, src_lengths)
        rows = torch.arange(batch, device=device).repeat_interleave(self.beam_size)
        self.state: DecoderState = model.initial_state(encoded).index_select(rows)
        self.encoded: EncoderOutput = encoded.index_select(rows)
        self.limits = limits  # sentences: max pieces, per sentence still searched
        # original index of each sentence still searched
        self.active = list(range(batch))
        # sentences x beam: raw log-probability of the live hypotheses; at the
        # start only the first is live, so the first step does not repeat it
        self.scores = torch.full((batch, self.beam_size), float("-inf"), device=device)
        self.scores[:, 0] = 0.0
        self.history = torch.empty(
            (batch, self.beam_size, 0), dtype=torch.long, device=device
        )  # sentences x beam x step: the pieces of the live hypotheses
        self.previous = torch.full(
            (batch * self.beam_size,), BOS_ID, dtype=torch.long, device=device
        )
        self.finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.step = 0

    def run(self) -> list[list[Hypothesis]]:
        while self.active:
            self._advance()
            self.step += 1
        return [
            sorted(hypotheses, key=_rank)[: self.n_best] for hypotheses in self.finished
        ]

    def _advance(self) -> None:
        """Extend every live hypothesis by one piece; retire finished sentences."""
        sentences, beam = len(self.active), self.beam_size
        logits, state, _ = self.model.decode_step(
            self.previous, self.state, self.encoded
        )  # sentences*beam x vocab
        at_limit = self.step >= self.limits  # sentences
        log_probs = torch.log_softmax(logits.float(), dim=1)  # sentences*beam x vocab
        # a row whose every piece is impossible gives NaN; it is a dead hypothesis
        log_probs = log_probs.nan_to_num(nan=float("-inf"))
        # at the limit the end symbol is forced, but keeps its own probability, so
        # a hypothesis cut short is scored by what the model thinks of its end
        log_probs = _only_end_at_limit(log_probs, at_limit.repeat_interleave(beam))
        vocab = log_probs.size(1)
        candidates = self.scores.unsqueeze(2) + log_probs.view(sentences, beam, vocab)
        flat = candidates.view(sentences, beam * vocab)
        top_scores, top_ids = flat.topk(min(2 * beam, beam * vocab), dim=1)  # s x 2k
        origins = torch.div(top_ids, vocab, rounding_mode="floor")  # sentences x 2k
        tokens = top_ids % vocab  # sentences x 2k

        self._collect_finished(top_scores, origins, tokens)
        live = self._choose_live(tokens)  # sentences x beam: ranks of live extensions
        live_origins = origins.gather(1, live)  # sentences x beam
        live_tokens = tokens.gather(1, live)  # sentences x beam
        self.scores = top_scores.gather(1, live)  # sentences x beam
        past = self.history.gather(
            1, live_origins.unsqueeze(2).expand(-1, -1, self.history.size(2))
        )  # sentences x beam x step
        self.history = torch.cat([past, live_tokens.unsqueeze(2)], dim=2)

        keep = self._still_searching(at_limit)  # positions of sentences kept
        offsets = torch.arange(sentences, device=tokens.device).unsqueeze(1) * beam
        rows = (offsets + live_origins)[keep].reshape(-1)  # kept sentences*beam
        self.state = state.index_select(rows)
        if len(keep) < sentences:
            self.encoded = self.encoded.index_select(rows)
            self.active = [self.active[j] for j in keep.tolist()]
            self.limits = self.limits[keep]
            self.scores = self.scores[keep]
            self.history = self.history[keep]
            live_tokens = live_tokens[keep]
        self.previous = live_tokens.reshape(-1)

    def _collect_finished(
        self, top_scores: torch.Tensor, origins: torch.Tensor, tokens: torch.Tensor
    ) -> None:
        """End-symbol extensions ranked within the beam become finished hypotheses."""
        beam = self.beam_size
        ended = (tokens[:, :beam] == EOS_ID) & torch.isfinite(top_scores[:, :beam])
        normaliser = self.search.length_normaliser(self.step + 1)  # end included
        for sentence, rank in ended.nonzero().tolist():
            origin = int(origins[sentence, rank])
            log_probability = float(top_scores[sentence, rank])
            self.finished[self.active[sentence]].append(
                Hypothesis(
                    self.history[sentence, origin].tolist(),
                    log_probability,
                    log_probability / normaliser,
                )
            )

    def _choose_live(self, tokens: torch.Tensor) -> torch.Tensor:
        """Ranks of the best ``beam_size`` extensions that are not the end symbol."""
        width = tokens.size(1)
        rank = torch.arange(width, device=tokens.device).unsqueeze(0)  # 1 x 2k
        order_key = rank + (tokens == EOS_ID).long() * width  # sentences x 2k
        return order_key.argsort(dim=1)[:, : self.beam_size]  # sentences x beam

    def _still_searching(self, at_limit: torch.Tensor) -> torch.Tensor:
        """Positions of sentences whose live hypotheses may still enter the n-best."""
        best_live = self.scores[:, 0].tolist()  # live scores are sorted, best first
        keep = [
            position
            for position, sentence in enumerate(self.active)
            if not bool(at_limit[position])
            and self._may_improve(
                self.finished[sentence], best_live[position], int(self.limits[position])
            )
        ]
        return torch.tensor(keep, dtype=torch.long, device=self.scores.device)

    def _may_improve(
        self, finished: list[Hypothesis], best_live: float, limit: int
    ) -> bool:
        """Whether a live hypothesis with raw score ``best_live`` could still beat
        the N-th best of ``finished`` (the bound of the module docstring)."""
        if best_live == float("-inf"):
            return False
        if len(finished) < self.n_best:
            return True
        nth_best = sorted(hypothesis.score for hypothesis in finished)[-self.n_best]
        bound = best_live / self.search.length_normaliser(limit + 1)
        return nth_best < bound


def _rank(hypothesis: Hypothesis) -> tuple[float, list[int]]:
    """Sort key: best score first; equal scores in a fixed order of their pieces."""
    return (-hypothesis.score, hypothesis.pieces)


def translate_ids(
    model: Seq2Seq,
    sources: Sequence[list[int]],
    search: SearchConfig,
    device: torch.device,
    batch_tokens: int = 4000,
    greedy: bool = False,
) -> list[list[int]]:
    """Translate source piece ids (no end symbol) in length-sorted batches.

    A batch holds sentences of similar length whose padded size times the
    beam size stays within ``batch_tokens``. Outputs come back in input order;
    an empty source gives an empty output without being decoded.
    """
    outputs: list[list[int]] = [[] for _ in sources]
    order = sorted(
        (i for i in range(len(sources)) if sources[i]), key=lambda i: -len(sources[i])
    )
    rows_per_sentence = 1 if greedy else search.beam_size
    start = 0
    while start < len(order):
        longest = len(sources[order[start]]) + 1
        size = max(1, batch_tokens // (longest * rows_per_sentence))
        chunk = order[start : start + size]
        start += size
        src = pad([sources[i] + [EOS_ID] for i in chunk]).to(device)  # batch x src_len
        src_lengths = torch.tensor([len(sources[i]) + 1 for i in chunk], device=device)
        if greedy:
            results = greedy_search(model, src, src_lengths, search)
        else:
            results = [
                hypotheses[0].pieces if hypotheses else []
                for hypotheses in beam_search(model, src, src_lengths, search)
            ]
        for index, result in zip(chunk, results):
            outputs[index] = result
    return outputs
