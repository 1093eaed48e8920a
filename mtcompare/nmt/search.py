"""Greedy and beam search over the decoder, batched over sentences.

Greedy search takes the most probable piece at every step. Beam search keeps
the ``beam_size`` best partial translations (hypotheses) of each sentence:
at each step every live hypothesis is extended by every piece, and the best
``beam_size`` extensions that do not end the sentence stay live, while
extensions by the end symbol that rank among the best ``beam_size`` become
finished hypotheses (the bookkeeping of Sutskever et al. 2014, section 3.2,
with the top-2k trick used by fairseq so a beam never runs short).

Log-probabilities only fall as a hypothesis grows, so raw scores favour
short output. Finished hypotheses are therefore compared by the
length-normalised score ``log P(y | x) / |y|^alpha`` (|y| counts the end
symbol; alpha = 0 is no normalisation, alpha = 1 the average log-probability
per piece; see Koehn & Knowles 2017, section 3.6, for why beams need it).

Stopping is exact under that score: a live hypothesis with raw score s can
at best keep s and end at the maximum length, so its normalised score is at
most s / (max_length + 1)^alpha. A sentence is done when its best finished
hypothesis is at least that bound for the best live one, or when it reaches
the maximum output length ``a * src_len + b``, where only the end symbol is
allowed. Finished sentences are dropped from the batch, so a batch costs as
much as its sentences still being searched.

With ``beam_size=1`` and ``length_penalty=0`` beam search is greedy search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mtcompare.data.subword import BOS_ID, EOS_ID
from mtcompare.nmt.batching import pad
from mtcompare.nmt.model import DecoderState, EncoderOutput, Seq2Seq


@dataclass
class SearchConfig:
    """How translations are searched for."""

    beam_size: int = 5
    length_penalty: float = 1.0  # alpha in log P / |y|^alpha
    max_length_ratio: float = 1.5  # a in max output length = a * src_len + b
    max_length_extra: int = 10  # b


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
    max_length_ratio: float = 1.5,
    max_length_extra: int = 10,
) -> list[list[int]]:
    """Most probable piece at each step; target ids without the end symbol."""
    model.eval()
    encoded = model.encode(src, src_lengths)
    state = model.initial_state(encoded)
    limits = max_output_lengths(src_lengths, max_length_ratio, max_length_extra)
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
    beam_size: int = 5,
    length_penalty: float = 1.0,
    max_length_ratio: float = 1.5,
    max_length_extra: int = 10,
) -> list[list[int]]:
    """Best hypothesis per sentence under the normalised score; ids without EOS."""
    model.eval()
    search = _BeamSearch(
        model,
        src,
        src_lengths,
        beam_size,
        length_penalty,
        max_output_lengths(src_lengths, max_length_ratio, max_length_extra),
    )
    return search.run()


def _only_end_at_limit(logits: torch.Tensor, at_limit: torch.Tensor) -> torch.Tensor:
    """Leave only the end symbol possible in rows that reached their length limit."""
    if not bool(at_limit.any()):
        return logits
    blocked = torch.full_like(logits, float("-inf"))
    blocked[:, EOS_ID] = logits[:, EOS_ID]
    return torch.where(at_limit.unsqueeze(1), blocked, logits)


class _BeamSearch:
    """State of one batched beam search; :meth:`run` steps it to the end."""

    def __init__(
        self,
        model: Seq2Seq,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        beam_size: int,
        length_penalty: float,
        limits: torch.Tensor,
    ):
        self.model = model
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        batch, device = src.size(0), src.device
        encoded = model.encode(src, src_lengths)
        rows = torch.arange(batch, device=device).repeat_interleave(beam_size)
        self.state: DecoderState = model.initial_state(encoded).index_select(rows)
        self.encoded: EncoderOutput = encoded.index_select(rows)
        self.limits = limits  # sentences: max pieces, per sentence still searched
        self.active = list(
            range(batch)
        )  # original index of each sentence still searched
        self.scores = torch.full((batch, beam_size), float("-inf"), device=device)
        self.scores[:, 0] = (
            0.0  # sentences x beam: raw log-probability of live hypotheses
        )
        self.history = torch.empty(
            (batch, beam_size, 0), dtype=torch.long, device=device
        )
        self.previous = torch.full(
            (batch * beam_size,), BOS_ID, dtype=torch.long, device=device
        )
        self.finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        self.step = 0

    def run(self) -> list[list[int]]:
        while self.active:
            self._advance()
            self.step += 1
        return [max(hypotheses)[1] for hypotheses in self.finished]

    def _advance(self) -> None:
        sentences, beam = len(self.active), self.beam_size
        logits, state, _ = self.model.decode_step(
            self.previous, self.state, self.encoded
        )
        at_limit = self.step >= self.limits  # sentences
        logits = _only_end_at_limit(logits, at_limit.repeat_interleave(beam))
        log_probs = torch.log_softmax(logits.float(), dim=1)  # sentences*beam x vocab
        # a row whose every piece is impossible gives NaN; it is a dead hypothesis
        log_probs = log_probs.nan_to_num(nan=float("-inf"))
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

        keep = self._still_searching(at_limit)
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
        length = self.step + 1  # pieces including the end symbol
        normaliser = length**self.length_penalty
        for sentence, rank in ended.nonzero().tolist():
            origin = int(origins[sentence, rank])
            pieces = self.history[sentence, origin].tolist()
            score = float(top_scores[sentence, rank]) / normaliser
            self.finished[self.active[sentence]].append((score, pieces))

    def _choose_live(self, tokens: torch.Tensor) -> torch.Tensor:
        """Ranks of the best ``beam_size`` extensions that are not the end symbol."""
        width = tokens.size(1)
        rank = torch.arange(width, device=tokens.device).unsqueeze(0)  # 1 x 2k
        order_key = rank + (tokens == EOS_ID).long() * width  # sentences x 2k
        return order_key.argsort(dim=1)[:, : self.beam_size]  # sentences x beam

    def _still_searching(self, at_limit: torch.Tensor) -> torch.Tensor:
        """Positions of sentences whose best live hypothesis may still win."""
        best_live = self.scores[:, 0].tolist()
        keep = []
        for position, sentence in enumerate(self.active):
            if bool(at_limit[position]):
                continue
            hypotheses = self.finished[sentence]
            if hypotheses:
                final_length = int(self.limits[position]) + 1
                bound = best_live[position] / final_length**self.length_penalty
                if max(hypotheses)[0] >= bound:
                    continue
            keep.append(position)
        return torch.tensor(keep, dtype=torch.long, device=self.scores.device)


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
            results = greedy_search(
                model,
                src,
                src_lengths,
                search.max_length_ratio,
                search.max_length_extra,
            )
        else:
            results = beam_search(
                model,
                src,
                src_lengths,
                search.beam_size,
                search.length_penalty,
                search.max_length_ratio,
                search.max_length_extra,
            )
        for index, result in zip(chunk, results):
            outputs[index] = result
    return outputs
