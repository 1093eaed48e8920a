"""An LSTM encoder-decoder with attention, input feeding and stacked layers.

The encoder reads the source pieces with N stacked bidirectional LSTM layers,
so each source position is described by the words on both sides of it
(Bahdanau et al. 2015, "Neural Machine Translation by Jointly Learning to
Align and Translate"). The decoder is a stack of M unidirectional LSTM layers
that emits one target piece per step. At each step its top layer's state is
scored against every source position, the scores become attention weights
through a softmax that gives padding zero weight, and the weighted average of
the encoder states is the context vector. Following Luong et al. 2015
("Effective Approaches to Attention-based Neural Machine Translation"), the
context and the decoder state are combined into an attentional hidden state

    attentional_t = tanh(W_c [context_t ; h_t])

from which the next piece is predicted, and which is also fed into the next
step's input (input feeding, Luong et al. 2015 section 3.3) so the decoder
knows what it attended to before. Three scoring functions are offered:

- ``dot``, score(h_t, m_s) = h_t^T m_s (Luong et al. 2015, eq. 8); it needs
  the decoder state as wide as an encoder state (2 x ``hidden_size``);
- ``general``, score = h_t^T W_a m_s (Luong et al. 2015, eq. 8), the default,
  one matrix product per step once W_a m_s is computed per sentence;
- ``additive``, score = v^T tanh(W h_t + U m_s) (Bahdanau et al. 2015,
  appendix A.1.2).

Between stacked layers (encoder and decoder alike) the connection is one of

- ``plain``: layer l reads the output of layer l-1;
- ``residual``: y_l = f_l(y_{l-1}) + y_{l-1} (He et al. 2016, used between
  LSTM layers by Wu et al. 2016, "Google's Neural Machine Translation
  System", section 3.1);
- ``highway``: y_l = g * f_l(y_{l-1}) + (1 - g) * y_{l-1} with a learned gate
  g = sigmoid(W_g y_{l-1} + b_g) (Srivastava et al. 2015, "Training Very Deep
  Networks", eq. 3);
- ``dense``: layer l reads the concatenation of the stack's input and the
  outputs of all earlier layers (Huang et al. 2017, "Densely Connected
  Convolutional Networks"), and the stack's output is a linear projection of
  the concatenated outputs of all its layers back to one layer's size.

The first layer of a stack always reads the stack's input (the embeddings),
which is of another size, so skip connections start at the second layer.

The decoder's first state (every layer) is a learned projection of the top
encoder layer's final forward and backward states. Dropout (Srivastava et
al. 2014) is applied to the embeddings, to what a layer reads from the layer
below (not to the skip path), to the encoder output and to the attentional
hidden state. Word dropout (Gal & Ghahramani 2016; used for low-resource NMT
by Sennrich & Zhang 2019, "Revisiting Low-Resource Neural Machine
Translation") drops whole input pieces during training, source and target
side separately: a dropped piece is read as the unknown piece ``<unk>``
(``word_dropout_mode="unk"``) or as a zero vector (``"zero"``). The other
pieces are not scaled up: a dropped word imitates a word the model does not
know, not noise on the features of the words it does. The start and end
symbols are never dropped.

With ``tie_target_embeddings`` the output layer shares its weight matrix with
the target embeddings (Press & Wolf 2017, "Using the Output Embedding to
Improve Language Models"), which needs the output layer's input to be
``embedding_size`` wide: either the attentional state is that wide, or
``output_projection`` adds a linear layer from it to ``embedding_size``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtcompare.data.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from mtcompare.errors import MtcError

ATTENTION_TYPES = ("dot", "general", "additive")
CONNECTION_TYPES = ("plain", "residual", "highway", "dense")
WORD_DROPOUT_MODES = ("unk", "zero")
# a negative gate bias makes a new highway stack carry its input through at first
# (Srivastava et al. 2015, section 2: "initialized with a negative value (e.g. -1, -3)")
HIGHWAY_GATE_BIAS = -1.0


@dataclass
class ModelConfig:
    """Sizes and choices of the network; written into every checkpoint."""

    src_vocab_size: int
    tgt_vocab_size: int
    embedding_size: int = 256
    hidden_size: int = 256  # encoder LSTM size per direction
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.2
    attention: str = "general"
    decoder_hidden_size: int = 0  # 0: the same as hidden_size
    encoder_connection: str = "plain"
    decoder_connection: str = "plain"
    src_word_dropout: float = 0.0
    tgt_word_dropout: float = 0.0
    word_dropout_mode: str = "unk"
    output_projection: bool = False  # attentional state -> embedding_size before output
    tie_target_embeddings: bool = False

    @property
    def decoder_size(self) -> int:
        """Width of every decoder layer and of the attentional state."""
        return self.decoder_hidden_size or self.hidden_size

    @property
    def memory_size(self) -> int:
        """Width of an encoder state: forward and backward halves."""
        return 2 * self.hidden_size

    @property
    def output_input_size(self) -> int:
        """Width of what the output layer reads."""
        return self.embedding_size if self.output_projection else self.decoder_size

    def validate(self) -> None:
        """Raise :class:`MtcError` on the first invalid value."""
        _check_choice("attention", self.attention, ATTENTION_TYPES)
        _check_choice("encoder_connection", self.encoder_connection, CONNECTION_TYPES)
        _check_choice("decoder_connection", self.decoder_connection, CONNECTION_TYPES)
        _check_choice("word_dropout_mode", self.word_dropout_mode, WORD_DROPOUT_MODES)
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "embedding_size",
            "hidden_size",
            "encoder_layers",
            "decoder_layers",
        ):
            if getattr(self, name) < 1:
                raise MtcError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decoder_hidden_size < 0:
            raise MtcError(
                "decoder_hidden_size must be at least 1, or 0 for the same as "
                f"hidden_size; got {self.decoder_hidden_size}"
            )
        for name in ("dropout", "src_word_dropout", "tgt_word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise MtcError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.attention == "dot" and self.decoder_size != self.memory_size:
            raise MtcError(
                "dot attention compares decoder states with encoder states directly, "
                f"so decoder_hidden_size must be 2 x hidden_size = {self.memory_size}"
                f" (got {self.decoder_size}); set it, or use attention general or "
                "additive"
            )
        if self.tie_target_embeddings and self.output_input_size != self.embedding_size:
            raise MtcError(
                "tie_target_embeddings needs the output layer's input as wide as the "
                f"embeddings, but the attentional state has {self.decoder_size} "
                f"and embedding_size is {self.embedding_size}; set "
                "output_projection=true, or make decoder_hidden_size equal to "
                "embedding_size"
            )


def _check_choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise MtcError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


@dataclass
class EncoderOutput:
    """What the decoder needs from the source, one row per hypothesis."""

    memory: torch.Tensor  # batch x src_len x 2*hidden: encoder states
    keys: torch.Tensor  # batch x src_len x key_size: memory pre-projected for scoring
    mask: torch.Tensor  # batch x src_len, True on real pieces, False on padding
    lengths: torch.Tensor  # batch: source lengths in pieces
    ends: torch.Tensor  # batch x 2*hidden: top layer's last forward, first backward

    def index_select(self, rows: torch.Tensor) -> "EncoderOutput":
        """Keep (or repeat) the given rows, e.g. to expand a batch into beams."""
        return EncoderOutput(
            self.memory.index_select(0, rows),
            self.keys.index_select(0, rows),
            self.mask.index_select(0, rows),
            self.lengths.index_select(0, rows),
            self.ends.index_select(0, rows),
        )


@dataclass
class DecoderState:
    """The recurrent state carried from one decoder step to the next."""

    hidden: list[torch.Tensor]  # per layer: batch x decoder_hidden
    cell: list[torch.Tensor]  # per layer: batch x decoder_hidden
    input_feed: torch.Tensor  # batch x decoder_hidden: previous attentional state

    def index_select(self, rows: torch.Tensor) -> "DecoderState":
        return DecoderState(
            [h.index_select(0, rows) for h in self.hidden],
            [c.index_select(0, rows) for c in self.cell],
            self.input_feed.index_select(0, rows),
        )


class LayerConnections(nn.Module):
    """What each layer of a stack reads, and what the stack outputs.

    Works on the last dimension only, so the same code serves the encoder
    (all time steps of a layer at once) and the decoder (one step at a time).
    """

    def __init__(
        self, kind: str, input_size: int, layer_size: int, layers: int, dropout: float
    ):
        super().__init__()
        self.kind = kind
        self.input_size = input_size
        self.layer_size = layer_size
        self.layer_count = layers
        self.dropout = nn.Dropout(dropout)
        if kind == "highway":
            self.gates = nn.ModuleList(
                nn.Linear(layer_size, layer_size) for _ in range(layers - 1)
            )
        if kind == "dense" and layers > 1:
            self.projection = nn.Linear(layers * layer_size, layer_size, bias=False)

    def layer_input_size(self, layer: int) -> int:
        """Width of what ``layer`` (0 = the lowest) reads."""
        if layer == 0:
            return self.input_size
        if self.kind == "dense":
            return self.input_size + layer * self.layer_size
        return self.layer_size

    def forward(
        self,
        stack_input: torch.Tensor,  # ... x input_size
        run_layer: Callable[[int, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Run the stack; ``run_layer(layer, input)`` applies one layer.

        Returns the stack's output (... x layer_size).
        """
        readable = [stack_input]  # what upper layers read: input, dropped-out outputs
        outputs: list[torch.Tensor] = []  # each ... x layer_size, after connections
        for layer in range(self.layer_count):
            if layer == 0:
                layer_input = stack_input
            elif self.kind == "dense":
                layer_input = torch.cat(readable, dim=-1)  # ... x layer_input_size
            else:
                layer_input = readable[-1]  # ... x layer_size
            output = run_layer(layer, layer_input)  # ... x layer_size
            if layer > 0:
                output = self._skip(layer, outputs[-1], output)
            outputs.append(output)
            if layer + 1 < self.layer_count:
                readable.append(self.dropout(output))
        if self.kind == "dense" and self.layer_count > 1:
            return self.projection(torch.cat(outputs, dim=-1))  # ... x layer_size
        return outputs[-1]

    def _skip(
        self, layer: int, below: torch.Tensor, output: torch.Tensor
    ) -> torch.Tensor:
        """Combine a layer's own output with the (clean) output of the layer below."""
        if self.kind == "residual":
            return output + below
        if self.kind == "highway":
            gate = torch.sigmoid(self.gates[layer - 1](below))  # ... x layer_size
            return gate * output + (1 - gate) * below
        return output

    def initialise_gates(self) -> None:
        """Start highway gates mostly closed (carrying the layer below through)."""
        if self.kind == "highway":
            for gate in self.gates:
                nn.init.constant_(gate.bias, HIGHWAY_GATE_BIAS)


class StackedBidirectionalEncoder(nn.Module):
    """N bidirectional LSTM layers joined by :class:`LayerConnections`.

    Each layer is its own one-layer ``nn.LSTM``, so that connections can act
    between layers. The layers run on the packed sequence (no padding);
    connections act position by position, so they work on its flat data.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        layers: int,
        connection: str,
        dropout: float,
    ):
        super().__init__()
        self.connections = LayerConnections(
            connection, input_size, 2 * hidden_size, layers, dropout
        )
        self.layers = nn.ModuleList(
            nn.LSTM(
                self.connections.layer_input_size(layer),
                hidden_size,
                bidirectional=True,
                batch_first=True,
            )
            for layer in range(layers)
        )
        self.register_load_state_dict_pre_hook(_rename_multilayer_lstm_parameters)

    def forward(
        self,
        embedded: torch.Tensor,  # batch x src_len x emb
        lengths: torch.Tensor,  # batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (batch x src_len x 2*hidden) and the top layer's final
        forward and backward states side by side (batch x 2*hidden)."""
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        final_states: list[torch.Tensor] = []

        def run_layer(layer: int, tokens: torch.Tensor) -> torch.Tensor:
            # tokens: packed_tokens x layer_input_size
            output, (last_hidden, _) = self.layers[layer](packed._replace(data=tokens))
            final_states.append(last_hidden)  # 2 x batch x hidden, input batch order
            return output.data  # packed_tokens x 2*hidden

        top = self.connections(packed.data, run_layer)  # packed_tokens x 2*hidden
        memory, _ = pad_packed_sequence(
            packed._replace(data=top), batch_first=True, total_length=embedded.size(1)
        )  # batch x src_len x 2*hidden
        forward_end, backward_end = final_states[-1]  # each batch x hidden
        return memory, torch.cat([forward_end, backward_end], dim=1)


def _rename_multilayer_lstm_parameters(
    module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: Any
) -> None:
    """Read weights saved when the encoder was one multi-layer ``nn.LSTM``.

    Models trained before the encoder had connections stored layer k as
    ``encoder.weight_ih_l{k}`` (and ``..._reverse``); the same weights are now
    ``encoder.layers.{k}.weight_ih_l0``. A plain stack computes the same.
    """
    pattern = re.compile(r"(weight|bias)_(ih|hh)_l(\d+)(_reverse)?")
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        match = pattern.fullmatch(key[len(prefix) :])
        if match:
            kind, gate, layer, reverse = match.groups()
            new_key = f"{prefix}layers.{layer}.{kind}_{gate}_l0{reverse or ''}"
            state_dict[new_key] = state_dict.pop(key)


class Attention(nn.Module):
    """Scores source positions against a decoder state; padding gets weight 0."""

    def __init__(self, kind: str, query_size: int, memory_size: int):
        super().__init__()
        self.kind = kind
        if kind != "dot":
            self.key_projection = nn.Linear(memory_size, query_size, bias=False)
        if kind == "additive":
            self.query_projection = nn.Linear(query_size, query_size, bias=True)
            self.energy = nn.Linear(query_size, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """What queries are scored against, computed once per sentence:
        m_s (dot), W_a m_s (general), U m_s (additive)."""
        if self.kind == "dot":
            return memory  # batch x src_len x memory_size (= query_size)
        return self.key_projection(memory)  # batch x src_len x query_size

    def forward(
        self,
        query: torch.Tensor,  # batch x query_size
        keys: torch.Tensor,  # batch x src_len x query_size
        memory: torch.Tensor,  # batch x src_len x memory_size
        mask: torch.Tensor,  # batch x src_len
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the context vector and the attention weights."""
        if self.kind == "additive":
            projected = self.query_projection(query).unsqueeze(1)  # batch x 1 x query
            energies = self.energy(torch.tanh(keys + projected))  # batch x src_len x 1
            scores = energies.squeeze(2)  # batch x src_len
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # batch x src_len
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # batch x src_len
        context = torch.bmm(weights.unsqueeze(1), memory)  # batch x 1 x memory_size
        return context.squeeze(1), weights


class Seq2Seq(nn.Module):
    """Stacked bidirectional LSTM encoder, stacked attentional LSTM decoder with
    input feeding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        memory_size, decoder_size = config.memory_size, config.decoder_size
        self.dropout = nn.Dropout(config.dropout)

        self.src_embedding = nn.Embedding(
            config.src_vocab_size, config.embedding_size, padding_idx=PAD_ID
        )
        self.encoder = StackedBidirectionalEncoder(
            config.embedding_size,
            config.hidden_size,
            config.encoder_layers,
            config.encoder_connection,
            config.dropout,
        )
        self.bridge_hidden = nn.Linear(memory_size, decoder_size)
        self.bridge_cell = nn.Linear(memory_size, decoder_size)

        self.tgt_embedding = nn.Embedding(
            config.tgt_vocab_size, config.embedding_size, padding_idx=PAD_ID
        )
        # the lowest layer reads the previous piece and the input feed
        self.decoder_connections = LayerConnections(
            config.decoder_connection,
            config.embedding_size + decoder_size,
            decoder_size,
            config.decoder_layers,
            config.dropout,
        )
        self.decoder_cells = nn.ModuleList(
            nn.LSTMCell(self.decoder_connections.layer_input_size(layer), decoder_size)
            for layer in range(config.decoder_layers)
        )
        self.attention = Attention(config.attention, decoder_size, memory_size)
        self.combine = nn.Linear(memory_size + decoder_size, decoder_size, bias=False)
        if config.output_projection:
            self.output_projection = nn.Linear(
                decoder_size, config.embedding_size, bias=False
            )
        self.output = nn.Linear(config.output_input_size, config.tgt_vocab_size)
        if config.tie_target_embeddings:
            self.output.weight = self.tgt_embedding.weight  # tgt_vocab x emb, shared
        self._initialise()

    def _initialise(self) -> None:
        # uniform in [-0.1, 0.1] as in Luong et al. 2015 section 4.1
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.1, 0.1)
        self.encoder.connections.initialise_gates()
        self.decoder_connections.initialise_gates()
        with torch.no_grad():
            self.src_embedding.weight[PAD_ID].zero_()
            self.tgt_embedding.weight[PAD_ID].zero_()

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """Encode padded source ids (batch x src_len) of the given lengths."""
        embedded = self._embed(
            self.src_embedding, src, self.config.src_word_dropout
        )  # batch x src_len x emb
        memory, ends = self.encoder(embedded, src_lengths)
        memory = self.dropout(memory)  # batch x src_len x 2*hidden
        mask = src != PAD_ID  # batch x src_len
        keys = self.attention.keys(memory)  # batch x src_len x key_size
        return EncoderOutput(memory, keys, mask, src_lengths, ends)

    def initial_state(self, encoded: EncoderOutput) -> DecoderState:
        """Decoder state before the first target piece, from the encoder's ends."""
        h0 = torch.tanh(self.bridge_hidden(encoded.ends))  # batch x decoder_hidden
        c0 = self.bridge_cell(encoded.ends)  # batch x decoder_hidden
        layers = self.config.decoder_layers
        return DecoderState([h0] * layers, [c0] * layers, torch.zeros_like(h0))

    def decode_step(
        self, previous: torch.Tensor, state: DecoderState, encoded: EncoderOutput
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One decoder step from the previous target ids (batch).

        Returns the logits over the target vocabulary (batch x tgt_vocab), the
        new state and the attention weights (batch x src_len).
        """
        embedded = self._embed(
            self.tgt_embedding, previous, self.config.tgt_word_dropout
        )  # batch x emb
        attentional, state, weights = self._step(embedded, state, encoded)
        return self._logits(attentional), state, weights

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_input: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (batch x tgt_len x tgt_vocab) for ``tgt_input``."""
        encoded = self.encode(src, src_lengths)
        state = self.initial_state(encoded)
        # one embedding lookup and one unbind for all steps, so that the backward
        # pass fills one gradient tensor rather than one per step
        embedded = self._embed(
            self.tgt_embedding, tgt_input, self.config.tgt_word_dropout
        )  # batch x tgt_len x emb
        attentional_states = []
        for step_input in embedded.unbind(dim=1):  # each batch x emb
            attentional, state, _ = self._step(step_input, state, encoded)
            attentional_states.append(attentional)
        stacked = torch.stack(attentional_states, dim=1)  # batch x tgt_len x dec_hidden
        return self._logits(stacked)  # batch x tgt_len x tgt_vocab

    def _embed(
        self, embedding: nn.Embedding, ids: torch.Tensor, word_dropout: float
    ) -> torch.Tensor:
        """Embeddings of ``ids`` (any shape) with word dropout and dropout applied."""
        if not (self.training and word_dropout > 0):
            return self.dropout(embedding(ids))  # ids.shape x emb
        droppable = (ids != PAD_ID) & (ids != BOS_ID) & (ids != EOS_ID)
        dropped = droppable & (torch.rand(ids.shape, device=ids.device) < word_dropout)
        if self.config.word_dropout_mode == "unk":
            return self.dropout(embedding(ids.masked_fill(dropped, UNK_ID)))
        vectors = embedding(ids).masked_fill(dropped.unsqueeze(-1), 0.0)
        return self.dropout(vectors)  # ids.shape x emb

    def _step(
        self, embedded: torch.Tensor, state: DecoderState, encoded: EncoderOutput
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """Advance the decoder by one step from the embedded previous piece."""
        stack_input = torch.cat([embedded, state.input_feed], dim=1)  # batch x emb+dec
        hidden, cell = [], []

        def run_layer(layer: int, layer_input: torch.Tensor) -> torch.Tensor:
            h, c = self.decoder_cells[layer](
                layer_input, (state.hidden[layer], state.cell[layer])
            )  # each batch x decoder_hidden
            hidden.append(h)
            cell.append(c)
            return h

        top = self.decoder_connections(stack_input, run_layer)  # batch x dec_hidden
        context, weights = self.attention(
            top, encoded.keys, encoded.memory, encoded.mask
        )  # batch x 2*hidden, batch x src_len
        combined = torch.cat([context, top], dim=1)  # batch x 2*hidden+dec_hidden
        attentional = self.dropout(torch.tanh(self.combine(combined)))  # batch x dec
        return attentional, DecoderState(hidden, cell, attentional), weights

    def _logits(self, attentional: torch.Tensor) -> torch.Tensor:
        """Scores over the target vocabulary (... x tgt_vocab)."""
        if self.config.output_projection:
            attentional = self.output_projection(attentional)  # ... x emb
        return self.output(attentional)
