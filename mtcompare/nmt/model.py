"""An LSTM encoder-decoder with attention and input feeding.

The encoder reads the source pieces with a bidirectional LSTM, so each source
position is described by the words on both sides of it (Bahdanau et al. 2015,
"Neural Machine Translation by Jointly Learning to Align and Translate").
The decoder is a unidirectional LSTM that emits one target piece per step.
At each step it scores every source position against its current state,
turns the scores into attention weights with a softmax that gives padding
zero weight, and reads the weighted average of the encoder states (the
context vector). Following Luong et al. 2015 ("Effective Approaches to
Attention-based Neural Machine Translation"), the context and the decoder
state are combined into an attentional hidden state

    attentional_t = tanh(W_c [context_t ; h_t])

from which the next piece is predicted, and which is also fed into the next
step's input (input feeding, Luong et al. 2015 section 3.3) so the decoder
knows what it attended to before. Two scoring functions are offered:
``general``, score(h_t, m_s) = h_t^T W_a m_s (Luong et al. 2015, eq. 8), the
default because it costs one matrix product per step, and ``additive``,
score = v^T tanh(W h_t + U m_s) (Bahdanau et al. 2015, appendix A.1.2).

The decoder's first state is a learned projection of the encoder's final
forward and backward states. Dropout is applied to the embeddings, the
encoder outputs, between stacked layers and to the attentional hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtcompare.data.subword import PAD_ID
from mtcompare.errors import MtcError

ATTENTION_TYPES = ("general", "additive")


@dataclass
class ModelConfig:
    """Sizes of the network; written into every checkpoint."""

    src_vocab_size: int
    tgt_vocab_size: int
    embedding_size: int = 256
    hidden_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.2
    attention: str = "general"

    def validate(self) -> None:
        if self.attention not in ATTENTION_TYPES:
            raise MtcError(
                f"unknown attention {self.attention!r}; "
                f"valid: {', '.join(ATTENTION_TYPES)}"
            )
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "embedding_size",
            "hidden_size",
            "encoder_layers",
            "decoder_layers",
        ):
            if getattr(self, name) < 1:
                raise MtcError(
                    f"model {name} must be at least 1, got {getattr(self, name)}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise MtcError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class EncoderOutput:
    """What the decoder needs from the source, one row per hypothesis."""

    memory: torch.Tensor  # batch x src_len x 2*hidden: encoder states
    keys: torch.Tensor  # batch x src_len x key_size: memory pre-projected for scoring
    mask: torch.Tensor  # batch x src_len, True on real pieces, False on padding
    lengths: torch.Tensor  # batch: source lengths in pieces

    def index_select(self, rows: torch.Tensor) -> "EncoderOutput":
        """Keep (or repeat) the given rows, e.g. to expand a batch into beams."""
        return EncoderOutput(
            self.memory.index_select(0, rows),
            self.keys.index_select(0, rows),
            self.mask.index_select(0, rows),
            self.lengths.index_select(0, rows),
        )


@dataclass
class DecoderState:
    """The recurrent state carried from one decoder step to the next."""

    hidden: list[torch.Tensor]  # per layer: batch x hidden
    cell: list[torch.Tensor]  # per layer: batch x hidden
    input_feed: torch.Tensor  # batch x hidden: previous attentional hidden state

    def index_select(self, rows: torch.Tensor) -> "DecoderState":
        return DecoderState(
            [h.index_select(0, rows) for h in self.hidden],
            [c.index_select(0, rows) for c in self.cell],
            self.input_feed.index_select(0, rows),
        )


class Attention(nn.Module):
    """Scores source positions against a decoder state; padding gets weight 0."""

    def __init__(self, kind: str, query_size: int, memory_size: int):
        super().__init__()
        self.kind = kind
        self.key_projection = nn.Linear(memory_size, query_size, bias=False)
        if kind == "additive":
            self.query_projection = nn.Linear(query_size, query_size, bias=True)
            self.energy = nn.Linear(query_size, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """Project the memory once per sentence: W_a m_s (general), U m_s (additive)."""
        return self.key_projection(memory)  # batch x src_len x query_size

    def forward(
        self,
        query: torch.Tensor,  # batch x query_size
        keys: torch.Tensor,  # batch x src_len x query_size
        memory: torch.Tensor,  # batch x src_len x memory_size
        mask: torch.Tensor,  # batch x src_len
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the context vector and the attention weights."""
        if self.kind == "general":
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # batch x src_len
        else:
            projected = self.query_projection(query).unsqueeze(
                1
            )  # batch x 1 x query_size
            scores = self.energy(torch.tanh(keys + projected)).squeeze(
                2
            )  # batch x src_len
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # batch x src_len
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(
            1
        )  # batch x memory_size
        return context, weights


class Seq2Seq(nn.Module):
    """Bidirectional LSTM encoder, attentional LSTM decoder with input feeding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        hidden = config.hidden_size
        self.dropout = nn.Dropout(config.dropout)

        self.src_embedding = nn.Embedding(
            config.src_vocab_size, config.embedding_size, padding_idx=PAD_ID
        )
        self.encoder = nn.LSTM(
            config.embedding_size,
            hidden,
            num_layers=config.encoder_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
        )
        self.bridge_hidden = nn.Linear(2 * hidden, hidden)
        self.bridge_cell = nn.Linear(2 * hidden, hidden)

        self.tgt_embedding = nn.Embedding(
            config.tgt_vocab_size, config.embedding_size, padding_idx=PAD_ID
        )
        self.decoder_cells = nn.ModuleList(
            nn.LSTMCell(
                config.embedding_size + hidden if layer == 0 else hidden, hidden
            )
            for layer in range(config.decoder_layers)
        )
        self.attention = Attention(config.attention, hidden, 2 * hidden)
        self.combine = nn.Linear(2 * hidden + hidden, hidden, bias=False)
        self.output = nn.Linear(hidden, config.tgt_vocab_size)
        self._initialise()

    def _initialise(self) -> None:
        # uniform in [-0.1, 0.1] as in Luong et al. 2015 section 4.1
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.1, 0.1)
        with torch.no_grad():
            self.src_embedding.weight[PAD_ID].zero_()
            self.tgt_embedding.weight[PAD_ID].zero_()

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """Encode padded source ids (batch x src_len) of the given lengths."""
        embedded = self.dropout(self.src_embedding(src))  # batch x src_len x emb
        packed = pack_padded_sequence(
            embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        packed_memory, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(
            packed_memory, batch_first=True, total_length=src.size(1)
        )  # batch x src_len x 2*hidden
        memory = self.dropout(memory)
        mask = src != PAD_ID  # batch x src_len
        keys = self.attention.keys(memory)  # batch x src_len x hidden
        return EncoderOutput(memory, keys, mask, src_lengths)

    def initial_state(self, encoded: EncoderOutput) -> DecoderState:
        """Decoder state before the first target piece, from the encoder's ends."""
        batch = encoded.memory.size(0)
        hidden = self.config.hidden_size
        last = (encoded.lengths - 1).clamp(min=0)  # batch
        rows = torch.arange(batch, device=encoded.memory.device)
        forward_end = encoded.memory[rows, last, :hidden]  # batch x hidden
        backward_end = encoded.memory[:, 0, hidden:]  # batch x hidden
        ends = torch.cat([forward_end, backward_end], dim=1)  # batch x 2*hidden
        h0 = torch.tanh(self.bridge_hidden(ends))  # batch x hidden
        c0 = self.bridge_cell(ends)  # batch x hidden
        layers = self.config.decoder_layers
        return DecoderState([h0] * layers, [c0] * layers, torch.zeros_like(h0))

    def decode_step(
        self, previous: torch.Tensor, state: DecoderState, encoded: EncoderOutput
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One decoder step from the previous target ids (batch).

        Returns the logits over the target vocabulary (batch x tgt_vocab), the
        new state and the attention weights (batch x src_len).
        """
        embedded = self.dropout(self.tgt_embedding(previous))  # batch x emb
        attentional, state, weights = self._step(embedded, state, encoded)
        return self.output(attentional), state, weights

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_input: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (batch x tgt_len x tgt_vocab) for ``tgt_input``."""
        encoded = self.encode(src, src_lengths)
        state = self.initial_state(encoded)
        # one embedding lookup and one unbind for all steps, so that the backward
        # pass fills one gradient tensor rather than one per step
        embedded = self.dropout(self.tgt_embedding(tgt_input))  # batch x tgt_len x emb
        attentional_states = []
        for step_input in embedded.unbind(dim=1):  # each batch x emb
            attentional, state, _ = self._step(step_input, state, encoded)
            attentional_states.append(attentional)
        stacked = torch.stack(attentional_states, dim=1)  # batch x tgt_len x hidden
        return self.output(stacked)  # batch x tgt_len x tgt_vocab

    def _step(
        self, embedded: torch.Tensor, state: DecoderState, encoded: EncoderOutput
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """Advance the decoder by one step from the embedded previous piece."""
        layer_input = torch.cat([embedded, state.input_feed], dim=1)  # batch x emb+hid
        hidden, cell = [], []
        for layer, lstm_cell in enumerate(self.decoder_cells):
            h, c = lstm_cell(layer_input, (state.hidden[layer], state.cell[layer]))
            hidden.append(h)
            cell.append(c)
            layer_input = self.dropout(h) if layer + 1 < len(self.decoder_cells) else h
        context, weights = self.attention(
            layer_input, encoded.keys, encoded.memory, encoded.mask
        )  # batch x 2*hidden, batch x src_len
        combined = torch.cat([context, layer_input], dim=1)  # batch x 3*hidden
        attentional = self.dropout(torch.tanh(self.combine(combined)))  # batch x hidden
        return attentional, DecoderState(hidden, cell, attentional), weights
