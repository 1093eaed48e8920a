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

The teacher-forced pass of training computes what decoding step by step
computes, arranged for speed on a CPU (``bench/nmt_throughput.py`` measures
it): each encoder direction is one fused LSTM call over the padded batch;
the embeddings' share of the first decoder layer's gates is one product for
all target positions before the time loop, and the output layer one product
after it; inside the loop, the weights shared by all steps get their
gradients as one product over all steps rather than one per step; additive
attention is scored through the logistic function (see :class:`Attention`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

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
    between layers. Its two directions run as two one-directional passes over
    the padded batch: the forward pass reads every sentence from its first
    piece on; the backward pass reads every sentence's pieces in reverse
    order, with the padding left at the end. Neither reads padding before a
    real piece, and a recurrence never carries later positions back to
    earlier ones, so the states of the real pieces are those of a packed
    sequence; the padded positions' states are read by nothing and are set to
    zero in the stack's output. (A packed sequence computes the same, but on
    a CPU PyTorch runs it one time step at a time, and its backward pass
    clears a gradient buffer the size of a whole layer's gates at every step;
    over a padded batch each direction is one oneDNN operation, which took
    0.32 s of CPU time where the packed sequence took 0.52 s, forwards and
    backwards, for 35 sentences of up to 41 pieces, hidden size 512.)
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
        lengths = lengths.to(embedded.device).unsqueeze(1)  # batch x 1
        positions = torch.arange(embedded.size(1), device=embedded.device)
        real = positions < lengths  # batch x src_len
        # where each piece goes when the real pieces of its sentence are put in
        # reverse order and the padding stays; doing it twice gives the original
        reversed_positions = torch.where(real, lengths - 1 - positions, positions)
        final_states: list[torch.Tensor] = []

        def run_layer(layer: int, layer_input: torch.Tensor) -> torch.Tensor:
            # layer_input: batch x src_len x layer_input_size
            lstm = self.layers[layer]
            # each batch x src_len x hidden; backwards with the real pieces reversed
            forward_states = _one_direction(lstm, "", layer_input)
            backward_reversed = _one_direction(
                lstm, "_reverse", _at_positions(layer_input, reversed_positions)
            )
            # final states: forwards after the last real piece, backwards after the first
            final_states.append(
                torch.cat(
                    [
                        _at_positions(forward_states, lengths - 1),
                        _at_positions(backward_reversed, lengths - 1),
                    ],
                    dim=2,
                ).squeeze(1)
            )  # batch x 2*hidden
            backward_states = _at_positions(backward_reversed, reversed_positions)
            return torch.cat([forward_states, backward_states], dim=2)

        top = self.connections(embedded, run_layer)  # batch x src_len x 2*hidden
        memory = top.masked_fill(~real.unsqueeze(2), 0.0)  # batch x src_len x 2*hidden
        return memory, final_states[-1]


def _one_direction(lstm: nn.LSTM, suffix: str, inputs: torch.Tensor) -> torch.Tensor:
    """States (batch x len x hidden) of one direction of a one-layer ``nn.LSTM``
    (``suffix`` "" forwards, "_reverse" backwards) reading ``inputs`` (batch x
    len x input) from the first position on, starting from zero states."""
    weights = [
        getattr(lstm, f"{name}_l0{suffix}")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    zeros = inputs.new_zeros(1, inputs.size(0), lstm.hidden_size)  # 1 x batch x hidden
    # the function nn.LSTM.forward calls, here with one direction's weights
    states, _, _ = torch.lstm(
        inputs, (zeros, zeros), weights, True, 1, 0.0, lstm.training, False, True
    )
    return states


def _at_positions(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``values`` (batch x len x features) at ``positions`` (batch x k), per row."""
    index = positions.unsqueeze(2).expand(-1, -1, values.size(2))  # batch x k x feat
    return values.gather(1, index)  # batch x k x features


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
    """Scores source positions against a decoder state; padding gets weight 0.

    Additive scores go through the logistic function: tanh(z) = 2 sigmoid(2z)
    - 1 makes v^T tanh(z) = 2 v^T sigmoid(2z) - sum(v), and a constant added to
    every score leaves the softmax as it is, so the scores used are
    2 v^T sigmoid(2z), with the 2 inside folded into the keys (2 U m_s, once
    per sentence) and the query. The weights are those of v^T tanh(W h_t +
    U m_s); PyTorch's sigmoid takes a sixth of the time of its tanh on a CPU,
    and this is computed for every source position at every target step.
    """

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
        m_s (dot), W_a m_s (general), 2 U m_s (additive, see the class)."""
        if self.kind == "dot":
            return memory  # batch x src_len x memory_size (= query_size)
        if self.kind == "additive":
            return 2 * self.key_projection(memory)  # batch x src_len x query_size
        return self.key_projection(memory)  # batch x src_len x query_size

    def forward(
        self,
        query: torch.Tensor,  # batch x query_size
        keys: torch.Tensor,  # batch x src_len x query_size
        memory: torch.Tensor,  # batch x src_len x memory_size
        mask: torch.Tensor,  # batch x src_len
        project_query: Callable[[torch.Tensor], torch.Tensor] | None = None,
        read_memory: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the context vector and the attention weights.

        The decoder's teacher-forced loop passes its own products:
        ``project_query`` for W h_t + b of additive attention (with the
        weights of ``query_projection``), ``read_memory`` for the context
        vector from the weights (batch x src_len -> batch x memory_size).
        """
        if self.kind == "additive":
            project_query = project_query or self.query_projection
            projected = 2 * project_query(query).unsqueeze(1)  # batch x 1 x query
            # sigmoid(2 (U m_s + W h_t + b)), in place of the sum it is applied to
            squashed = (keys + projected).sigmoid_()  # batch x src_len x query
            scores = 2 * self.energy(squashed).squeeze(2)  # batch x src_len
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # batch x src_len
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # batch x src_len
        if read_memory is not None:
            return read_memory(weights), weights
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
        products = _StepProducts(self, self._embedding_gates(embedded))
        attentional, state, weights = self._step(embedded, products, state, encoded)
        return self._logits(attentional), state, weights

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_input: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (batch x tgt_len x tgt_vocab) for ``tgt_input``."""
        encoded = self.encode(src, src_lengths)
        state = self.initial_state(encoded)
        # one embedding lookup and one unbind for all steps, so that the backward
        # pass fills one gradient tensor rather than one per step; likewise the
        # embeddings' share of the first decoder layer's gates, one product
        embedded = self._embed(
            self.tgt_embedding, tgt_input, self.config.tgt_word_dropout
        )  # batch x tgt_len x emb
        embedding_gates = self._embedding_gates(embedded)  # batch x tgt_len x 4*dec
        products = _LoopProducts(self, embedding_gates.transpose(0, 1), encoded.memory)
        attentional_states = []
        for step_input in embedded.unbind(dim=1):  # each batch x emb
            attentional, state, _ = self._step(step_input, products, state, encoded)
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

    def _embedding_gates(self, embedded: torch.Tensor) -> torch.Tensor:
        """The embedded pieces' share of the first decoder layer's gate
        pre-activations, with both its biases (... x 4*decoder_hidden)."""
        cell = self.decoder_cells[0]
        embedding_weights = cell.weight_ih[:, : self.config.embedding_size]
        return nn.functional.linear(
            embedded, embedding_weights, cell.bias_ih + cell.bias_hh
        )

    def _step(
        self,
        embedded: torch.Tensor,
        products: _StepProducts | _LoopProducts,
        state: DecoderState,
        encoded: EncoderOutput,
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """Advance the decoder by one step from the embedded previous piece.

        The first layer reads [embedding; input feed]; its gates are the
        embedding's share (in ``products``) plus W_feed feed + W_hh h.
        """
        stack_input = torch.cat([embedded, state.input_feed], dim=1)  # batch x emb+dec
        hidden, cell = [], []

        def run_layer(layer: int, layer_input: torch.Tensor) -> torch.Tensor:
            if layer == 0:  # layer_input is stack_input, already in the gates
                gates = products.first_layer_gates(state.input_feed, state.hidden[0])
                h, c = lstm_cell_update(gates, state.cell[0])
            else:
                h, c = self.decoder_cells[layer](
                    layer_input, (state.hidden[layer], state.cell[layer])
                )  # each batch x decoder_hidden
            hidden.append(h)
            cell.append(c)
            return h

        top = self.decoder_connections(stack_input, run_layer)  # batch x dec_hidden
        context, weights = self.attention(
            top,
            encoded.keys,
            encoded.memory,
            encoded.mask,
            products.query,
            products.read_memory,
        )  # batch x 2*hidden, batch x src_len
        combined = torch.cat([context, top], dim=1)  # batch x 2*hidden+dec_hidden
        attentional = self.dropout(torch.tanh(products.combine(combined)))
        return attentional, DecoderState(hidden, cell, attentional), weights

    def _logits(self, attentional: torch.Tensor) -> torch.Tensor:
        """Scores over the target vocabulary (... x tgt_vocab)."""
        if self.config.output_projection:
            attentional = self.output_projection(attentional)  # ... x emb
        return self.output(attentional)


def lstm_cell_update(
    gates: torch.Tensor, cell: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM's new hidden state and cell from its gate pre-activations.

    ``gates`` (batch x 4*hidden) holds the input gate, forget gate, candidate
    and output gate in ``nn.LSTMCell``'s order (Hochreiter & Schmidhuber 1997,
    with the forget gate of Gers et al. 2000): c' = f * c + i * g,
    h' = o * tanh(c').
    """
    input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
    kept = torch.sigmoid(forget_gate) * cell  # batch x hidden
    new_cell = kept + torch.sigmoid(input_gate) * torch.tanh(candidate)
    new_hidden = torch.sigmoid(output_gate) * torch.tanh(new_cell)  # batch x hidden
    return new_hidden, new_cell


class _StepProducts:
    """The products with weights of one decoder step taken on its own
    (search): the first layer's gates from the input feed and the state, the
    additive attention's query projection and the attentional layer; the
    attention reads the encoder states itself (``read_memory`` None)."""

    def __init__(self, model: Seq2Seq, embedding_gates: torch.Tensor):
        cell = model.decoder_cells[0]
        embedding_size = model.config.embedding_size
        self.feed_weights = cell.weight_ih[:, embedding_size:]  # 4*dec x dec
        self.recurrent_weights = cell.weight_hh  # 4*dec x dec
        self.embedding_gates = embedding_gates  # batch x 4*dec
        self.query = (
            model.attention.query_projection
            if model.config.attention == "additive"
            else None
        )
        self.combine = model.combine
        self.read_memory = None

    def first_layer_gates(
        self, input_feed: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        """Gate pre-activations of the first layer (batch x 4*dec)."""
        feed = nn.functional.linear(input_feed, self.feed_weights)
        recurrent = nn.functional.linear(hidden, self.recurrent_weights)
        return self.embedding_gates + feed + recurrent


class _LoopProducts:
    """The same products at every step of one teacher-forced pass, and the
    attention's weighted sum of the encoder states.

    The first layer's input-feed and recurrent weights act as one matrix on
    [input feed; h]. With autograd on, autograd would compute the gradient of
    a weight matrix (or of the encoder states) at every step, a thin product
    plus an addition into the gradient so far; here it is one product over
    all steps, computed when the backward pass reaches the start of the loop
    (:class:`_LoopGradient`). The values are the same; only the order in
    which the gradient's terms are summed differs.
    """

    def __init__(
        self, model: Seq2Seq, embedding_gates: torch.Tensor, memory: torch.Tensor
    ):
        # embedding_gates: tgt_len x batch x 4*dec; memory: batch x src_len x 2*hidden
        cell = model.decoder_cells[0]
        embedding_size = model.config.embedding_size
        steps, rows, _ = embedding_gates.shape
        gate_weights = torch.cat(
            [cell.weight_ih[:, embedding_size:], cell.weight_hh], dim=1
        )  # 4*dec x 2*dec
        self.gates = _SharedWeightProduct(gate_weights, embedding_gates)
        self.query = None
        if model.config.attention == "additive":
            projection = model.attention.query_projection
            self.query = _SharedWeightProduct(
                projection.weight,
                projection.bias.expand(steps, rows, projection.out_features),
            )
        combine = model.combine.weight  # dec x 2*hidden+dec
        self.combine = _SharedWeightProduct(
            combine, combine.new_zeros(steps, rows, combine.size(0))
        )
        self.read_memory = _SharedMemoryRead(memory, steps)

    def first_layer_gates(
        self, input_feed: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        return self.gates(torch.cat([input_feed, hidden], dim=1))  # batch x 4*dec


class _SharedWeightProduct:
    """x_t W^T + base_t for the steps t = 0, 1, ... of one time loop, in order.

    ``base`` (steps x batch x out) is what each step adds (a bias, a share
    computed for all steps at once). When autograd tracks W, each step
    multiplies by W untracked, so autograd computes only x_t's gradient
    there, and W's gradient sum_t dy_t^T x_t is one product at the end.
    """

    def __init__(self, weight: torch.Tensor, base: torch.Tensor):
        self.weight = weight  # out x in
        self.inputs: list[torch.Tensor] = []  # x_t of the steps so far, batch x in
        if torch.is_grad_enabled() and weight.requires_grad:
            base = _LoopGradient.apply(base, weight, self.inputs, _weight_gradient)
            self.weight = weight.detach()
        self.bases = base.unbind(0)  # each batch x out

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        base = self.bases[len(self.inputs)]  # batch x out
        self.inputs.append(inputs.detach())
        return torch.addmm(base, inputs, self.weight.t())  # batch x out


class _SharedMemoryRead:
    """The context vectors sum_s a_t[s] m_s of the steps t = 0, 1, ... of one
    time loop, in order, from the attention weights a_t; the gradient of the
    encoder states m, sum_t a_t^T dcontext_t, is one batched product at the end.
    """

    def __init__(self, memory: torch.Tensor, steps: int):
        self.memory = memory  # batch x src_len x 2*hidden
        self.weights: list[torch.Tensor] = []  # a_t so far, each batch x src_len
        rows, _, width = memory.shape
        zeros = memory.new_zeros(steps, rows, width)
        if torch.is_grad_enabled() and memory.requires_grad:
            zeros = _LoopGradient.apply(zeros, memory, self.weights, _memory_gradient)
            self.memory = memory.detach()
        self.zeros = zeros.unbind(0)  # each batch x 2*hidden, carrying the gradient

    def __call__(self, weights: torch.Tensor) -> torch.Tensor:
        zeros = self.zeros[len(self.weights)].unsqueeze(1)  # batch x 1 x 2*hidden
        self.weights.append(weights.detach())
        context = torch.baddbmm(zeros, weights.unsqueeze(1), self.memory)
        return context.squeeze(1)  # batch x 2*hidden


def _weight_gradient(
    output_gradient: torch.Tensor, inputs: list[torch.Tensor]
) -> torch.Tensor:
    """sum_t dy_t^T x_t: output_gradient steps x batch x out, inputs batch x in."""
    steps, rows, out = output_gradient.shape
    stacked = torch.stack(inputs).reshape(steps * rows, -1)  # steps*batch x in
    output_gradient, stacked = _common_precision(output_gradient, stacked)
    return output_gradient.reshape(steps * rows, out).t() @ stacked  # out x in


def _memory_gradient(
    context_gradient: torch.Tensor, weights: list[torch.Tensor]
) -> torch.Tensor:
    """sum_t a_t^T dcontext_t per sentence: context_gradient steps x batch x
    2*hidden, weights batch x src_len."""
    stacked = torch.stack(weights, dim=2)  # batch x src_len x steps
    stacked, context_gradient = _common_precision(stacked, context_gradient)
    # batch x src_len x 2*hidden
    return torch.bmm(stacked, context_gradient.transpose(0, 1))


def _common_precision(
    first: torch.Tensor, second: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both in the wider of their types: under autocast (mixed precision) a
    loop's operands and gradients come in float32 and 16-bit types mixed."""
    dtype = torch.promote_types(first.dtype, second.dtype)
    return first.to(dtype), second.to(dtype)


class _LoopGradient(torch.autograd.Function):
    """Passes ``carrier`` on unchanged; its backward pass also returns the
    gradient of ``shared``, the operand every step of a loop used untracked:
    ``gradient(carrier's gradient, collected)``, where the carrier's gradient
    holds each step's output gradient (steps x ...) and ``collected`` each
    step's other operand, filled in as the loop ran."""

    @staticmethod
    def forward(
        ctx: Any,
        carrier: torch.Tensor,  # steps x batch x out
        shared: torch.Tensor,
        collected: list[torch.Tensor],
        gradient: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor],
    ) -> torch.Tensor:
        ctx.collected = collected
        ctx.gradient = gradient
        return carrier.view_as(carrier)

    @staticmethod
    def backward(
        ctx: Any, carrier_gradient: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        shared_gradient = ctx.gradient(carrier_gradient, ctx.collected)
        return carrier_gradient, shared_gradient, None, None
