"""The attentional encoder-decoder: attention, encoder direction, layer connections,
word dropout, tied embeddings, old checkpoints and learning a toy corpus; the fast
training pass against plain references (packed LSTM, step-by-step decoding)."""

import math
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtcompare.data.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from mtcompare.errors import MtcError
from mtcompare.nmt.batching import collate, pad
from mtcompare.nmt.model import (
    ATTENTION_TYPES,
    CONNECTION_TYPES,
    Attention,
    LayerConnections,
    ModelConfig,
    Seq2Seq,
    lstm_cell_update,
)
from mtcompare.nmt.search import greedy_search
from mtcompare.nmt.train import NMTConfig, restore_model

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_attention_weights_sum_to_one_and_are_zero_on_padding(kind: str) -> None:
    torch.manual_seed(0)
    attention = Attention(kind, query_size=12, memory_size=12)
    memory = torch.randn(3, 5, 12)  # batch x src_len x memory
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).bool()
    context, weights = attention(
        torch.randn(3, 12), attention.keys(memory), memory, mask
    )
    assert torch.allclose(weights.sum(dim=1), torch.ones(3))
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)
    # one real position: all weight on it
    assert torch.allclose(context[2], memory[2, 0])


def test_dot_attention_by_hand() -> None:
    # query (1, 0) scores the positions (0, 0) and (ln 3, 5) as 0 and ln 3, so
    # softmax gives 1/4 and 3/4; the third position is padding
    attention = Attention("dot", query_size=2, memory_size=2)
    memory = torch.tensor([[[0.0, 0.0], [math.log(3), 5.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    context, weights = attention(torch.tensor([[1.0, 0.0]]), memory, memory, mask)
    assert torch.allclose(weights, torch.tensor([[0.25, 0.75, 0.0]]))
    assert torch.allclose(context, torch.tensor([[0.75 * math.log(3), 3.75]]))


def test_encoder_halves_read_one_side_of_the_sentence() -> None:
    torch.manual_seed(0)
    hidden = 6
    model = Seq2Seq(ModelConfig(30, 30, 8, hidden, dropout=0.0)).eval()
    src = torch.tensor([[5, 6, 7, 8, 9, 10, EOS_ID]])  # 1 x 7
    lengths = torch.tensor([7])
    position = 3
    changed = src.clone()
    changed[0, :position] = torch.tensor([20, 21, 22])  # other words before position 3
    memory = model.encode(src, lengths).memory  # 1 x 7 x 2*hidden
    memory_changed = model.encode(changed, lengths).memory
    backward = slice(hidden, 2 * hidden)
    # the backward half at t reads tokens t..end only
    assert torch.equal(
        memory[0, position:, backward], memory_changed[0, position:, backward]
    )
    # ... and does read its own token: change position 3 as well and it moves
    changed[0, position] = 23
    moved = model.encode(changed, lengths).memory
    assert not torch.allclose(
        memory[0, position, backward], moved[0, position, backward]
    )
    # the forward half, at the same position, reads the earlier tokens
    forward = slice(0, hidden)
    assert not torch.allclose(
        memory[0, position, forward], memory_changed[0, position, forward]
    )


@pytest.mark.parametrize("kind", CONNECTION_TYPES)
def test_connections_compute_their_formula_and_keep_shapes(kind: str) -> None:
    # three toy layers f_l(x) = tanh(x W_l) on a 2 x 3 x 5 input, layers of width 4
    torch.manual_seed(4)
    connections = LayerConnections(kind, 5, 4, 3, dropout=0.0)
    weights = [
        torch.randn(connections.layer_input_size(layer), 4) / 3 for layer in range(3)
    ]

    def f(layer: int, value: torch.Tensor) -> torch.Tensor:
        return torch.tanh(value @ weights[layer])

    x = torch.randn(2, 3, 5)
    output = connections(x, f)
    assert output.shape == (2, 3, 4)

    y1 = f(0, x)
    if kind == "plain":
        expected = f(2, f(1, y1))
    elif kind == "residual":
        y2 = f(1, y1) + y1
        expected = f(2, y2) + y2
    elif kind == "highway":
        gate = torch.sigmoid(connections.gates[0](y1))
        y2 = gate * f(1, y1) + (1 - gate) * y1
        gate = torch.sigmoid(connections.gates[1](y2))
        expected = gate * f(2, y2) + (1 - gate) * y2
    else:
        y2 = f(1, torch.cat([x, y1], dim=-1))
        y3 = f(2, torch.cat([x, y1, y2], dim=-1))
        expected = torch.cat([y1, y2, y3], dim=-1) @ connections.projection.weight.T
    assert torch.allclose(output, expected, atol=1e-6)


@pytest.mark.parametrize("kind", CONNECTION_TYPES)
@pytest.mark.parametrize("layers", [1, 3])
def test_stacked_models_keep_shapes_and_ignore_padding(kind: str, layers: int) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        20,
        22,
        8,
        6,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_connection=kind,
        decoder_connection=kind,
        decoder_hidden_size=10,
        attention="additive",
    )
    model = Seq2Seq(config).eval()
    sources = [[5, 6, 7, 8, 9, 10], [11, 12]]
    targets = [[5, 6, 7], [8, 9]]
    batch = collate([0, 1], sources, targets)
    encoded = model.encode(batch.src, batch.src_lengths)
    assert encoded.memory.shape == (2, 7, 12)  # batch x src_len x 2*hidden
    state = model.initial_state(encoded)
    assert len(state.hidden) == layers and state.hidden[0].shape == (2, 10)
    together = model(batch.src, batch.src_lengths, batch.tgt_input)
    assert together.shape == (2, 4, 22)  # batch x tgt_len x tgt_vocab
    alone = collate([1], sources, targets)
    by_itself = model(alone.src, alone.src_lengths, alone.tgt_input)
    assert torch.allclose(together[1, :3], by_itself[0], atol=1e-5)


def test_a_plain_stack_is_the_old_multilayer_lstm_and_reads_its_weights() -> None:
    # checkpoints written before connections existed hold one 2-layer nn.LSTM
    # under encoder.weight_ih_l0, ..._l1_reverse; they must load and compute the same
    torch.manual_seed(0)
    config = ModelConfig(20, 20, 8, 6, encoder_layers=2, dropout=0.0)
    model = Seq2Seq(config).eval()
    old_encoder = torch.nn.LSTM(
        8, 6, num_layers=2, bidirectional=True, batch_first=True
    )
    state = {
        key: value
        for key, value in model.state_dict().items()
        if not key.startswith("encoder.")
    }
    state.update(
        {f"encoder.{key}": value for key, value in old_encoder.state_dict().items()}
    )
    model.load_state_dict(state)

    src = torch.tensor([[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]])
    lengths = torch.tensor([4, 2])
    packed = pack_padded_sequence(
        model.src_embedding(src), lengths, batch_first=True, enforce_sorted=False
    )
    expected, _ = pad_packed_sequence(old_encoder(packed)[0], batch_first=True)
    with torch.no_grad():
        assert torch.allclose(model.encode(src, lengths).memory, expected, atol=1e-6)


def _all_dropped(ids: torch.Tensor, replacement: int) -> torch.Tensor:
    ordinary = (ids != PAD_ID) & (ids != BOS_ID) & (ids != EOS_ID)
    return ids.masked_fill(ordinary, replacement)


@pytest.mark.parametrize("mode", ["unk", "zero"])
def test_word_dropout_drops_whole_words_in_training_only(mode: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        30,
        30,
        8,
        6,
        dropout=0.0,
        src_word_dropout=0.9999,
        tgt_word_dropout=0.9999,
        word_dropout_mode=mode,
    )
    model = Seq2Seq(config)
    src = torch.tensor([[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, PAD_ID, PAD_ID]])
    lengths = torch.tensor([5, 3])
    tgt_input = torch.tensor([[BOS_ID, 11, 12], [BOS_ID, 13, PAD_ID]])
    replacement = UNK_ID
    if mode == "zero":  # piece 29, unused below, gets a zero vector to compare with
        replacement = 29
        with torch.no_grad():
            model.src_embedding.weight[replacement].zero_()
            model.tgt_embedding.weight[replacement].zero_()
    model.train()
    dropped = model(src, lengths, tgt_input)
    model.eval()
    assert not torch.allclose(dropped, model(src, lengths, tgt_input))
    # with (almost) every word dropped, training reads every ordinary piece as
    # <unk>, or as a zero vector; the start and end symbols stay
    expected = model(
        _all_dropped(src, replacement), lengths, _all_dropped(tgt_input, replacement)
    )
    assert torch.allclose(dropped, expected, atol=1e-6)


def test_word_dropout_rate() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(
        ModelConfig(30, 30, 8, 6, dropout=0.0, src_word_dropout=0.3)
    ).train()
    ids = torch.randint(4, 30, (100, 100))
    embedded = model._embed(model.src_embedding, ids, 0.3)  # 100 x 100 x 8
    unknown = model.src_embedding.weight[UNK_ID]
    replaced = (embedded == unknown).all(dim=2).float().mean()
    assert abs(float(replaced) - 0.3) < 0.02  # 10,000 draws: standard error 0.005


def test_tied_embeddings_share_one_matrix_and_need_matching_sizes() -> None:
    with pytest.raises(MtcError, match="output_projection=true"):
        ModelConfig(20, 20, 8, 6, tie_target_embeddings=True).validate()
    equal = Seq2Seq(
        ModelConfig(20, 20, 8, 6, decoder_hidden_size=8, tie_target_embeddings=True)
    )
    assert equal.output.weight is equal.tgt_embedding.weight
    torch.manual_seed(0)
    model = Seq2Seq(
        ModelConfig(20, 20, 8, 6, tie_target_embeddings=True, output_projection=True)
    )
    assert model.output.weight is model.tgt_embedding.weight
    untied = sum(
        p.numel()
        for p in Seq2Seq(ModelConfig(20, 20, 8, 6, output_projection=True)).parameters()
    )
    assert sum(p.numel() for p in model.parameters()) == untied - 20 * 8
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = collate([0], [[5, 6]], [[7, 8]])
    model(batch.src, batch.src_lengths, batch.tgt_input).sum().backward()
    optimizer.step()
    assert torch.equal(model.output.weight, model.tgt_embedding.weight)


@pytest.mark.parametrize(
    "change, valid",
    [
        ({"attention": "luong"}, "dot, general, additive"),
        ({"encoder_connection": "skip"}, "plain, residual, highway, dense"),
        ({"decoder_connection": "skip"}, "plain, residual, highway, dense"),
        ({"word_dropout_mode": "drop"}, "unk, zero"),
        ({"length_normalisation": "wu"}, "length, gnmt"),
        ({"attention": "dot"}, "decoder_hidden_size must be 2 x hidden_size = 512"),
        ({"src_word_dropout": 1.0}, "src_word_dropout must be in [0, 1)"),
    ],
)
def test_config_errors_say_what_is_valid(change: dict, valid: str) -> None:
    with pytest.raises(MtcError) as caught:
        NMTConfig(**change).validate()
    assert valid in str(caught.value)
    assert "\n" not in str(caught.value)


def test_dot_attention_with_a_decoder_as_wide_as_the_encoder() -> None:
    NMTConfig(attention="dot", decoder_hidden_size=512).validate()
    model = Seq2Seq(ModelConfig(20, 20, 8, 6, decoder_hidden_size=12, attention="dot"))
    batch = collate([0], [[5, 6]], [[7, 8]])
    assert model(batch.src, batch.src_lengths, batch.tgt_input).shape == (1, 3, 20)


def _overfit(config: ModelConfig, steps: int) -> None:
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    sources, targets = [], []
    for _ in range(10):
        length = int(torch.randint(3, 8, (1,), generator=generator))
        source = torch.randint(4, 30, (length,), generator=generator).tolist()
        sources.append(source)
        targets.append([piece + 10 for piece in reversed(source)])  # a reordering task
    model = Seq2Seq(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate(list(range(10)), sources, targets)
    for _ in range(steps):
        logits = model(batch.src, batch.src_lengths, batch.tgt_input)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, config.tgt_vocab_size),
            batch.tgt_output.reshape(-1),
            ignore_index=0,
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    src = pad([source + [EOS_ID] for source in sources])
    lengths = torch.tensor([len(source) + 1 for source in sources])
    assert greedy_search(model, src, lengths) == targets


def test_overfits_ten_pairs_to_perfect_reproduction() -> None:
    _overfit(ModelConfig(30, 40, 32, 64, dropout=0.0), steps=150)


def test_a_deep_tied_model_overfits_ten_pairs_too() -> None:
    config = ModelConfig(
        30,
        40,
        32,
        32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_connection="residual",
        decoder_connection="highway",
        attention="additive",
        decoder_hidden_size=64,
        output_projection=True,
        tie_target_embeddings=True,
        dropout=0.0,
    )
    _overfit(config, steps=150)


def _checkpoint(config: ModelConfig) -> dict:
    torch.manual_seed(0)
    model = Seq2Seq(config)
    return {
        "model": model.state_dict(),
        "model_config": asdict(config),
        "progress": {"step": 7},
    }


def test_restore_model_gives_back_the_saved_network() -> None:
    config = ModelConfig(20, 20, 8, 8, encoder_layers=2, encoder_connection="dense")
    checkpoint = _checkpoint(config)
    model, progress = restore_model(
        checkpoint, Path("best.pt"), torch.device("cpu"), "retrain"
    )
    assert progress.step == 7
    assert all(
        torch.equal(value, checkpoint["model"][name])
        for name, value in model.state_dict().items()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"hidden_size": 12},
        {"attention": "dot"},
        {"hidden_size": 0},
        {"layers": 2},
        {"encoder_connection": "dense", "encoder_layers": 2},
    ],
)
def test_weights_that_do_not_fit_their_config_are_one_short_line(change: dict) -> None:
    checkpoint = _checkpoint(ModelConfig(20, 20, 8, 8))
    checkpoint["model_config"].update(change)
    with pytest.raises(MtcError) as caught:
        restore_model(checkpoint, Path("best.pt"), torch.device("cpu"), "retrain")
    message = str(caught.value)
    assert message.startswith("best.pt: its network does not fit its model_config")
    assert message.endswith("; retrain") and "\n" not in message
    assert len(message) < 200


# ------------------------------------------------- the fast teacher-forced pass


def test_encoder_is_a_packed_bidirectional_lstm_in_values_and_gradients() -> None:
    # the encoder runs each direction over the padded batch; PyTorch's packed
    # sequence, which never reads padding, is the reference, in float32 as trained
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(20, 20, 8, 6, dropout=0.0)).train()
    lstm = model.encoder.layers[0]
    lengths = torch.tensor([5, 1, 3, 4])  # unsorted, one of a single piece
    embedded = torch.randn(4, 5, 8, requires_grad=True)  # batch x src_len x emb
    memory, ends = model.encoder(embedded, lengths)
    packed = pack_padded_sequence(
        embedded, lengths, batch_first=True, enforce_sorted=False
    )
    packed_states, (last_hidden, _) = lstm(packed)
    expected, _ = pad_packed_sequence(packed_states, batch_first=True)
    assert torch.allclose(memory, expected, atol=1e-6)  # padding 0 in both
    assert torch.allclose(
        ends, torch.cat([last_hidden[0], last_hidden[1]], 1), atol=1e-6
    )

    generator = torch.Generator().manual_seed(1)
    memory_weights = torch.randn(memory.shape, generator=generator)
    end_weights = torch.randn(ends.shape, generator=generator)

    def gradients(states: torch.Tensor, final: torch.Tensor) -> list[torch.Tensor]:
        loss = (states * memory_weights).sum() + (final * end_weights).sum()
        return torch.autograd.grad(loss, [embedded, *lstm.parameters()])

    reference_final = torch.cat([last_hidden[0], last_hidden[1]], 1)
    for ours, reference in zip(
        gradients(memory, ends), gradients(expected, reference_final)
    ):
        assert torch.allclose(ours, reference, atol=1e-5)


def test_lstm_cell_update_is_pytorchs_lstm_cell() -> None:
    torch.manual_seed(0)
    cell_module = torch.nn.LSTMCell(5, 3)
    inputs, hidden, cell = torch.randn(2, 5), torch.randn(2, 3), torch.randn(2, 3)
    gates = torch.nn.functional.linear(
        inputs, cell_module.weight_ih, cell_module.bias_ih
    ) + torch.nn.functional.linear(hidden, cell_module.weight_hh, cell_module.bias_hh)
    expected_hidden, expected_cell = cell_module(inputs, (hidden, cell))
    new_hidden, new_cell = lstm_cell_update(gates, cell)
    assert torch.allclose(new_hidden, expected_hidden, atol=1e-6)
    assert torch.allclose(new_cell, expected_cell, atol=1e-6)


def test_additive_attention_is_bahdanaus_formula() -> None:
    # weights = softmax over real positions of v^T tanh(W h + b + U m_s)
    # (Bahdanau et al. 2015, appendix A.1.2), written out from the parameters
    torch.manual_seed(0)
    attention = Attention("additive", query_size=4, memory_size=6)
    memory = torch.randn(2, 3, 6)  # batch x src_len x memory
    mask = torch.tensor([[True, True, True], [True, True, False]])
    query = torch.randn(2, 4)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    W, b = attention.query_projection.weight, attention.query_projection.bias
    U, v = attention.key_projection.weight, attention.energy.weight[0]
    for row in range(2):
        real = int(mask[row].sum())
        scores = torch.stack(
            [
                v @ torch.tanh(W @ query[row] + b + U @ memory[row, s])
                for s in range(real)
            ]
        )
        expected = torch.softmax(scores, dim=0)
        assert torch.allclose(weights[row, :real], expected, atol=1e-6)
        assert torch.all(weights[row, real:] == 0)
        assert torch.allclose(context[row], expected @ memory[row, :real], atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(30, 25, 8, 6, attention="additive", dropout=0.0),
        ModelConfig(30, 25, 8, 6, attention="general", dropout=0.0),
        ModelConfig(30, 25, 8, 6, attention="dot", decoder_hidden_size=12, dropout=0.0),
        ModelConfig(
            30,
            25,
            8,
            6,
            encoder_layers=2,
            decoder_layers=3,
            encoder_connection="dense",
            decoder_connection="highway",
            attention="additive",
            decoder_hidden_size=10,
            output_projection=True,
            tie_target_embeddings=True,
            dropout=0.0,
        ),
    ],
    ids=["additive", "general", "dot", "stacked"],
)
def test_teacher_forced_pass_is_decode_step_after_decode_step(
    config: ModelConfig,
) -> None:
    # forward() computes each shared weight's gradient once for all steps; one
    # decode_step per position, plain autograd, must give the same logits and
    # the same gradients (float64, so that only rounding of that order is left)
    torch.manual_seed(0)
    model = Seq2Seq(config).double().train()
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    targets = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]
    batch = collate([0, 1, 2], sources, targets)
    generator = torch.Generator().manual_seed(1)
    loss_weights = torch.randn(
        *batch.tgt_input.shape, config.tgt_vocab_size, generator=generator
    ).double()

    logits = model(batch.src, batch.src_lengths, batch.tgt_input)
    fast = torch.autograd.grad((logits * loss_weights).sum(), list(model.parameters()))

    encoded = model.encode(batch.src, batch.src_lengths)
    state = model.initial_state(encoded)
    stepped = []
    for previous in batch.tgt_input.unbind(dim=1):
        step_logits, state, _ = model.decode_step(previous, state, encoded)
        stepped.append(step_logits)
    stepped_logits = torch.stack(stepped, dim=1)  # batch x tgt_len x vocab
    plain = torch.autograd.grad(
        (stepped_logits * loss_weights).sum(), list(model.parameters())
    )
    assert torch.allclose(logits, stepped_logits, atol=1e-12)
    for (name, _), ours, reference in zip(model.named_parameters(), fast, plain):
        assert torch.allclose(ours, reference, atol=1e-10), name
    with torch.no_grad():  # the untracked loop (dev perplexity) computes the same
        assert torch.allclose(
            model(batch.src, batch.src_lengths, batch.tgt_input), logits, atol=1e-12
        )


def test_teacher_forced_pass_under_bfloat16_autocast() -> None:
    # mixed precision hands the loop float32 and bfloat16 tensors together; the
    # gradients come back in float32, close to those of a float32 pass
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(30, 25, 16, 16, attention="additive", dropout=0.0))
    batch = collate([0, 1], [[5, 6, 7, 8], [9]], [[10, 11], [12, 13, 14]])

    def gradient() -> torch.Tensor:
        model.zero_grad()
        logits = model(batch.src, batch.src_lengths, batch.tgt_input)
        logits.float().log_softmax(dim=-1)[..., 7].sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    full = gradient()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = gradient()
    assert mixed.dtype == torch.float32
    assert torch.cosine_similarity(mixed, full, dim=0) > 0.999


def test_checkpoint_layout_is_unchanged() -> None:
    # the names and shapes every saved model has (1 layer, additive attention):
    # gates are 4 x the LSTM size, the decoder reads [embedding; input feed]
    emb, hidden, src_vocab, tgt_vocab = 8, 6, 20, 22
    gates, memory = 4 * hidden, 2 * hidden
    expected = {
        "src_embedding.weight": (src_vocab, emb),
        "bridge_hidden.weight": (hidden, memory),
        "bridge_hidden.bias": (hidden,),
        "bridge_cell.weight": (hidden, memory),
        "bridge_cell.bias": (hidden,),
        "tgt_embedding.weight": (tgt_vocab, emb),
        "decoder_cells.0.weight_ih": (gates, emb + hidden),
        "decoder_cells.0.weight_hh": (gates, hidden),
        "decoder_cells.0.bias_ih": (gates,),
        "decoder_cells.0.bias_hh": (gates,),
        "attention.key_projection.weight": (hidden, memory),
        "attention.query_projection.weight": (hidden, hidden),
        "attention.query_projection.bias": (hidden,),
        "attention.energy.weight": (1, hidden),
        "combine.weight": (hidden, memory + hidden),
        "output.weight": (tgt_vocab, hidden),
        "output.bias": (tgt_vocab,),
    }
    for direction in ("", "_reverse"):
        expected[f"encoder.layers.0.weight_ih_l0{direction}"] = (gates, emb)
        expected[f"encoder.layers.0.weight_hh_l0{direction}"] = (gates, hidden)
        expected[f"encoder.layers.0.bias_ih_l0{direction}"] = (gates,)
        expected[f"encoder.layers.0.bias_hh_l0{direction}"] = (gates,)
    model = Seq2Seq(
        ModelConfig(src_vocab, tgt_vocab, emb, hidden, attention="additive")
    )
    layout = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    assert layout == expected
