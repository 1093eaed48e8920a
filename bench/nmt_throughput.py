"""Training throughput of the JoeyNMT-sized NMT model, in target tokens per second.

    python3 bench/nmt_throughput.py [--prepared PREP] [--subwords DIR]
                                    [--threads 1 2] [--steps 16] [--warmup 2]
                                    [--batch-tokens 1500] [--config KEY=VALUE ...]
                                    [--profile]

Issue 4 asks for the training speed of a 1-layer bidirectional LSTM encoder
(512 per direction), a 1-layer LSTM decoder (512) with additive attention
(Bahdanau et al. 2015) and input feeding (Luong et al. 2015, section 3.3),
embeddings of 256 and 8,000 pieces per side, trained with Adam on
length-bucketed batches of 1,500 tokens: at least 1.5 times JoeyNMT 2.3's
870 target tokens per second on two cores. This script measures, in one run:

1. *The training step.* Batches are cut by the trainer's own
   ``make_batches`` (a batch's padded size, sentences x (longest side + 1),
   stays within ``--batch-tokens``) from the real training pairs of the
   prepared corpus, segmented with the SentencePiece models of a trained NMT
   model directory (``--subwords``, ``spm.{lang}.model``) as the trainer
   segments them (the default models are unigram models per language, not
   one joint vocabulary; the benchmarked network has 8,000 pieces a side
   either way); without such models the pairs keep their word lengths, with
   random ids, and the log says so (pieces are about 1.3 times as many as
   words). One epoch's
   batches are sorted by their longest target side and ``--steps`` of them
   taken at evenly spaced ranks, so the sample covers short and long
   sentences as an epoch does. Each timed step is what
   ``mtcompare.nmt.train._TrainingLoop._train_step`` does in float32 on the
   CPU, replicated here because that method belongs to the whole training
   loop: collate the batch, forward pass, label-smoothed loss
   (``label_smoothed_losses``, smoothing 0.1), backward pass of the loss per
   target token, gradient-norm clipping at 1.0, an Adam step at 2e-3, and
   reading the loss back as a Python number, with the trainer's default
   dropout (0.2). ``--warmup`` steps run first and are not timed. Each
   ``--threads`` setting trains its own fresh model from the same seed on
   the same batches.

2. *The work of a step.* The floating-point operations of the matrix
   products, counted from the model configuration and each batch's lengths
   (one multiply-add is 2 operations; the backward pass of a product
   ``Y = X W`` computes ``dX`` and ``dW``, two more products of the same
   size, so a training step costs 3 times the forward products). Per batch
   of B sentences with source lengths s_i and target lengths t_i (each with
   its end or start symbol), longest S and T, embedding size E, encoder size
   H per direction, decoder size D, vocabulary V:

   * encoder, per padded source position (B S), per layer and direction:
     2 (in + H) 4H, with in = E for the first layer;
   * attention keys U m_s, once per padded source position (B S):
     2 (2H) D; the bridge to the decoder's first state, per sentence:
     2 x 2 (2H) D;
   * decoder, per padded target position (B T): the LSTM gates
     2 (E + D + D) 4D (input: embedding and input feed; recurrence);
     additive attention 2 D D for the query plus 2 S D for the energies
     v^T tanh(.) and 2 S (2H) for the context vector; the attentional layer
     2 (2H + D) D; the output layer 2 D V.

   Element-wise work (gate non-linearities, the tanh of additive attention,
   softmax, Adam) is not counted; it is small against the products but is
   bound by memory bandwidth rather than arithmetic. The count is given as
   executed (padded positions included) and as useful (each sentence at its
   own lengths), and checked against ``torch.utils.flop_counter.
   FlopCounterMode`` on one batch, which counts the matrix products PyTorch
   really dispatched (with oneDNN off for that pass, since the counter has
   no formula for oneDNN's fused LSTM).

3. *The machine's rate.* ``torch.mm`` in float32 at the model's shapes, in
   the same run and with the same thread count: all positions of a batch
   through the gate and output layers ((1500 x 512) @ (512 x 2048),
   (1500 x 512) @ (512 x 8000)) and one decoder step's gates for a typical
   batch ((B x 1024) @ (1024 x 2048)). The best of the two large shapes is
   the machine's matrix-multiply rate; the training's share of it is the
   achieved rate (executed operations per second) over that rate.

The machine this runs on may be shared. Every figure is given by three
clocks, with the load average around it: wall time, the process's CPU time
and the CPU time of the main thread. On a quiet machine the wall-time
figures are the ones to quote. On a loaded one, process CPU time at one
thread is what an idle core would take, and main-thread CPU time at two
threads estimates what two idle cores would take: the main thread runs all
the serial work and its share of every parallel operation, and a waiting
thread sleeps (below) without using CPU time. The matmul rate and the
training are measured alike, so their ratio (the share) holds up better
under load than either figure. ``--profile`` adds a ``torch.profiler`` table
of one step at one thread, the operators that take the most time.

``OMP_WAIT_POLICY=PASSIVE`` is set before torch is imported: PyTorch's
OpenMP threads otherwise spin while they wait, and on a loaded machine two
spinning threads run many times slower than one (issue 4).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import logging
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtcompare.data.prepare import load_manifest
from mtcompare.data.subword import PAD_ID, SubwordModel
from mtcompare.errors import MtcError
from mtcompare.fileio import read_lines
from mtcompare.nmt.batching import Batch, collate, filter_by_length, make_batches
from mtcompare.nmt.model import ModelConfig, Seq2Seq
from mtcompare.nmt.train import NMTConfig, MixedPrecision, label_smoothed_losses

logger = logging.getLogger("bench.nmt_throughput")

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_PREPARED = REPOSITORY / "runs/exp/prep"
DEFAULT_SUBWORDS = REPOSITORY / "runs/bible/nmt"
# issue 4: JoeyNMT 2.3, same model and batches, two idle cores; the bar is 1.5 x it
JOEYNMT_TOKENS_PER_SECOND = 870.0
BAR_FACTOR = 1.5
# the trainer's defaults (mtcompare.nmt.train.NMTConfig) that a step depends on
TRAINER_DEFAULTS = NMTConfig()
SEED = 1
MATMUL_MIN_SECONDS = 0.4  # each shape is repeated for at least this long
BATCH_POSITIONS = 1500  # rows of the "all positions of a batch" matmul shapes


def joeynmt_sized_config() -> ModelConfig:
    """The model of issue 4: BiLSTM 512 per direction, decoder 512, additive."""
    return ModelConfig(8000, 8000, 256, 512, attention="additive")


# ---------------------------------------------------------------- the corpus


@dataclass
class Pairs:
    """Training pairs as piece ids, as the trainer holds them."""

    sources: list[list[int]]
    targets: list[list[int]]
    indices: list[int]  # pairs within the trainer's max_length
    segmentation: str  # how the lengths came about, for the report


def load_pairs(prepared: Path, subwords: Path, config: ModelConfig) -> Pairs:
    """The prepared corpus's training pairs, segmented as the trainer does when
    ``subwords`` holds its SentencePiece models, else random ids at word lengths."""
    manifest = load_manifest(prepared)
    src_lang, tgt_lang = manifest["src_lang"], manifest["tgt_lang"]
    src_lines = read_lines(prepared / f"train.tok.{src_lang}")
    tgt_lines = read_lines(prepared / f"train.tok.{tgt_lang}")
    if len(src_lines) != len(tgt_lines):
        raise MtcError(
            f"{prepared}: train.tok.{src_lang} and train.tok.{tgt_lang} differ in "
            "length; rerun 'mtcompare prepare'"
        )
    models = [subwords / f"spm.{lang}.model" for lang in (src_lang, tgt_lang)]
    if all(path.is_file() for path in models):
        src_model, tgt_model = (SubwordModel.load(path) for path in models)
        sources = [src_model.encode_ids(line) for line in src_lines]
        targets = [tgt_model.encode_ids(line) for line in tgt_lines]
        words = sum(len(line.split()) for line in tgt_lines)
        segmentation = (
            f"SentencePiece pieces from {subwords}/spm.{{{src_lang},{tgt_lang}}}."
            f"model ({sum(map(len, targets)) / max(words, 1):.2f} {tgt_lang} pieces "
            "per word)"
        )
        # ids of a smaller vocabulary than the benchmarked one are valid as they are
        limit = min(config.src_vocab_size, config.tgt_vocab_size)
        if max(max(ids, default=0) for ids in sources + targets) >= limit:
            raise MtcError(
                f"{subwords}: its SentencePiece vocabularies are larger than the "
                f"benchmarked model's {limit:,} pieces; raise --config "
                "src_vocab_size/tgt_vocab_size or pass another --subwords"
            )
    else:
        logger.warning(
            "no SentencePiece models at %s: using word lengths with random ids "
            "(subword pieces would be about 1.3 times as many)",
            subwords,
        )
        generator = random.Random(SEED)
        sources = [
            _random_ids(line, config.src_vocab_size, generator) for line in src_lines
        ]
        targets = [
            _random_ids(line, config.tgt_vocab_size, generator) for line in tgt_lines
        ]
        segmentation = "random ids at the tokenised word lengths (no subwords)"
    logging.getLogger("mtcompare.nmt.batching").setLevel(logging.WARNING)
    indices = filter_by_length(sources, targets, TRAINER_DEFAULTS.max_length)
    return Pairs(sources, targets, indices, f"{src_lang}->{tgt_lang}, {segmentation}")


def _random_ids(line: str, vocab_size: int, generator: random.Random) -> list[int]:
    # ids 0-3 are padding, unknown, start and end
    return [generator.randrange(4, vocab_size) for _ in line.split()]


def sample_batches(
    pairs: Pairs, batch_tokens: int, count: int
) -> tuple[list[list[int]], int]:
    """``count`` batches of one epoch at evenly spaced ranks of their longest
    target side, and the epoch's number of batches."""
    epoch = make_batches(
        pairs.indices, pairs.sources, pairs.targets, batch_tokens, random.Random(SEED)
    )
    by_length = sorted(
        epoch, key=lambda batch: max(len(pairs.targets[i]) for i in batch)
    )
    count = min(count, len(by_length))
    ranks = [int((k + 0.5) * len(by_length) / count) for k in range(count)]
    return [by_length[rank] for rank in ranks], len(epoch)


# ---------------------------------------------------------- operation count


@dataclass
class Positions:
    """How many times each part of the network runs for one batch."""

    sentences: int
    encoder_positions: int  # rows x encoder steps
    key_positions: int  # rows of the attention keys
    decoder_positions: int  # decoder steps x rows
    attention_pairs: int  # (decoder position, source position) pairs scored

    @classmethod
    def executed(cls, batch: Batch) -> "Positions":
        """As the model runs the batch: every position of the padded tensors."""
        rows, target_length = batch.tgt_input.shape
        source_length = batch.src.size(1)
        return cls(
            rows,
            rows * source_length,
            rows * source_length,
            rows * target_length,
            rows * target_length * source_length,
        )

    @classmethod
    def useful(cls, batch: Batch) -> "Positions":
        """Each sentence at its own lengths, as if there were no padding."""
        source_lengths = batch.src_lengths.tolist()
        target_lengths = (batch.tgt_output != PAD_ID).sum(dim=1).tolist()
        return cls(
            len(source_lengths),
            sum(source_lengths),
            sum(source_lengths),
            sum(target_lengths),
            sum(s * t for s, t in zip(source_lengths, target_lengths)),
        )


def forward_matmul_flops(config: ModelConfig, positions: Positions) -> dict[str, int]:
    """Floating-point operations of the forward pass's matrix products, by part.

    The formulas are those of the module docstring, generalised to stacked
    layers and every attention, connection and output option of the config;
    the one-letter sizes are the docstring's.
    """
    E, H, D = config.embedding_size, config.hidden_size, config.decoder_size
    M, V = config.memory_size, config.tgt_vocab_size  # M = 2H
    parts: dict[str, int] = {}

    encoder_per_token = 0
    for layer in range(config.encoder_layers):
        layer_input = _layer_input_size(config.encoder_connection, E, M, layer)
        encoder_per_token += 2 * 2 * (layer_input + H) * 4 * H  # two directions
    encoder_per_token += _connection_flops(
        config.encoder_connection, M, config.encoder_layers
    )
    parts["encoder LSTM"] = positions.encoder_positions * encoder_per_token
    if config.attention != "dot":
        parts["attention keys"] = positions.key_positions * 2 * M * D
    parts["bridge"] = positions.sentences * 2 * (2 * M * D)

    decoder_per_position = 0
    for layer in range(config.decoder_layers):
        layer_input = _layer_input_size(config.decoder_connection, E + D, D, layer)
        decoder_per_position += 2 * (layer_input + D) * 4 * D
    decoder_per_position += _connection_flops(
        config.decoder_connection, D, config.decoder_layers
    )
    parts["decoder LSTM"] = positions.decoder_positions * decoder_per_position
    query = 2 * D * D if config.attention == "additive" else 0
    parts["attention query"] = positions.decoder_positions * query
    parts["attention scores"] = positions.attention_pairs * 2 * D
    parts["attention context"] = positions.attention_pairs * 2 * M
    parts["attentional layer"] = positions.decoder_positions * 2 * (M + D) * D
    if config.output_projection:
        parts["output projection"] = positions.decoder_positions * 2 * D * E
    parts["output layer"] = (
        positions.decoder_positions * 2 * config.output_input_size * V
    )
    return {name: flops for name, flops in parts.items() if flops}


def _layer_input_size(
    connection: str, stack_input: int, layer_size: int, layer: int
) -> int:
    # as LayerConnections.layer_input_size
    if layer == 0:
        return stack_input
    if connection == "dense":
        return stack_input + layer * layer_size
    return layer_size


def _connection_flops(connection: str, layer_size: int, layers: int) -> int:
    """Per position: highway gates of the upper layers, or the dense projection."""
    if connection == "highway":
        return (layers - 1) * 2 * layer_size * layer_size
    if connection == "dense" and layers > 1:
        return 2 * layers * layer_size * layer_size
    return 0


def training_flops(config: ModelConfig, positions: Positions) -> int:
    """Forward and backward: every product's two gradients cost twice its own."""
    return 3 * sum(forward_matmul_flops(config, positions).values())


def counted_training_flops(model: Seq2Seq, batch: Batch) -> int:
    """The products PyTorch dispatches for one forward and backward pass.

    With oneDNN on, the encoder's LSTM runs as one fused operator that the
    counter has no formula for; without it, PyTorch runs the same recurrence
    as matrix products and element-wise operations, which it counts.
    """
    model.train()
    with warnings.catch_warnings():
        # switching oneDNN off warns that its TF32 mode needs an Intel GPU
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            with FlopCounterMode(display=False) as counter:
                logits = model(batch.src, batch.src_lengths, batch.tgt_input)
                smoothed, _ = label_smoothed_losses(
                    logits, batch.tgt_output, TRAINER_DEFAULTS.label_smoothing
                )
                (smoothed / batch.target_tokens).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


# ------------------------------------------------------------------ timings

CLOCKS = ("wall", "cpu", "main")  # wall time, process CPU time, main thread's CPU time
CLOCK_NAMES = {"wall": "wall", "cpu": "process CPU", "main": "main-thread CPU"}


@dataclass
class Clock:
    """Seconds of one stretch of work by each of the three clocks."""

    wall: float = 0.0
    cpu: float = 0.0  # all threads of the process
    main: float = 0.0  # the thread that runs Python (and a share of each parallel op)

    def add(self, other: "Clock") -> None:
        self.wall += other.wall
        self.cpu += other.cpu
        self.main += other.main


class Stopwatch:
    """``with Stopwatch() as watch:`` ... then ``watch.clock``."""

    def __enter__(self) -> "Stopwatch":
        self.start = (time.perf_counter(), time.process_time(), time.thread_time())
        return self

    def __exit__(self, *_: object) -> None:
        wall, cpu, main = self.start
        self.clock = Clock(
            time.perf_counter() - wall,
            time.process_time() - cpu,
            time.thread_time() - main,
        )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class MatmulRate:
    """GFLOP/s of one ``torch.mm`` shape by each clock."""

    shape: str
    gflops: dict[str, float]


def measure_matmul(rows: int, inner: int, columns: int) -> MatmulRate:
    """float32 ``torch.mm`` rate of (rows x inner) @ (inner x columns)."""
    generator = torch.Generator().manual_seed(SEED)
    left = torch.randn(rows, inner, generator=generator)
    right = torch.randn(inner, columns, generator=generator)
    result = torch.empty(rows, columns)
    for _ in range(3):
        torch.mm(left, right, out=result)
    repeats, total = 0, Clock()
    while total.wall < MATMUL_MIN_SECONDS:
        with Stopwatch() as watch:
            for _ in range(5):
                torch.mm(left, right, out=result)
        repeats += 5
        total.add(watch.clock)
    flops = 2 * rows * inner * columns * repeats
    return MatmulRate(
        f"({rows} x {inner}) @ ({inner} x {columns})",
        {clock: flops / max(getattr(total, clock), 1e-9) / 1e9 for clock in CLOCKS},
    )


@dataclass
class ThreadResult:
    """The timed training steps and the matmul rates at one thread count."""

    threads: int
    clock: Clock
    step_wall_ms: list[float]
    target_tokens: int
    executed_flops: int
    matmul: list[MatmulRate]
    load_before: str
    load_after: str

    def tokens_per_second(self, clock: str) -> float:
        return self.target_tokens / getattr(self.clock, clock)

    def achieved_gflops(self, clock: str) -> float:
        """Executed GFLOP/s of the training."""
        return self.executed_flops / getattr(self.clock, clock) / 1e9

    def machine_gflops(self, clock: str) -> float:
        """The best of the large matmul shapes (the first two)."""
        return max(rate.gflops[clock] for rate in self.matmul[:2])


class TrainingStep:
    """A fresh model and optimizer, stepped as the trainer steps them."""

    def __init__(self, config: ModelConfig, pairs: Pairs):
        torch.manual_seed(SEED)
        self.model = Seq2Seq(config)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=TRAINER_DEFAULTS.lr
        )
        self.precision = MixedPrecision(TRAINER_DEFAULTS.precision, torch.device("cpu"))
        self.pairs = pairs

    def run(self, indices: list[int]) -> tuple[float, int]:
        """One update on the pairs ``indices``: its loss per token, its target tokens."""
        self.model.train()
        batch = collate(indices, self.pairs.sources, self.pairs.targets)
        with self.precision.autocast():
            logits = self.model(batch.src, batch.src_lengths, batch.tgt_input)
            smoothed, _ = label_smoothed_losses(
                logits, batch.tgt_output, TRAINER_DEFAULTS.label_smoothing
            )
        scaler = self.precision.scaler  # disabled in float32: a pass-through
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(smoothed / batch.target_tokens).backward()
        scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), TRAINER_DEFAULTS.clip_norm
        )
        scaler.step(self.optimizer)
        scaler.update()
        return float(smoothed.detach()) / batch.target_tokens, batch.target_tokens


def benchmark_threads(
    threads: int,
    config: ModelConfig,
    pairs: Pairs,
    warmup: list[list[int]],
    timed: list[Batch],
    timed_indices: list[list[int]],
    step_rows: int,
) -> ThreadResult:
    """Warm-up steps, the timed steps, then the matmul rates, at ``threads``."""
    torch.set_num_threads(threads)
    step = TrainingStep(config, pairs)
    for indices in warmup:
        step.run(indices)
    load_before = load_average()
    total, step_ms, losses = Clock(), [], []
    for indices in timed_indices:
        with Stopwatch() as watch:
            loss, _ = step.run(indices)
        total.add(watch.clock)
        step_ms.append(1000 * watch.clock.wall)
        losses.append(loss)
    load_after = load_average()
    tokens = sum(batch.target_tokens for batch in timed)
    logger.info(
        "%d thread(s): %d steps, %s target tokens in %.1f s wall, %.1f s CPU; "
        "loss per token %.3f at the first step, %.3f at the last",
        threads,
        len(timed),
        f"{tokens:,}",
        total.wall,
        total.cpu,
        losses[0],
        losses[-1],
    )
    decoder_size = config.decoder_size
    matmul = [
        measure_matmul(BATCH_POSITIONS, decoder_size, 4 * decoder_size),
        measure_matmul(
            BATCH_POSITIONS, config.output_input_size, config.tgt_vocab_size
        ),
        # one decoder step's gates from [input feed; previous state]
        measure_matmul(step_rows, 2 * decoder_size, 4 * decoder_size),
    ]
    executed = sum(training_flops(config, Positions.executed(batch)) for batch in timed)
    return ThreadResult(
        threads, total, step_ms, tokens, executed, matmul, load_before, load_after
    )


def profile_step(
    config: ModelConfig, pairs: Pairs, indices: list[int], rows: int
) -> str:
    """The operators of one training step at one thread, most self time first."""
    torch.set_num_threads(1)
    step = TrainingStep(config, pairs)
    step.run(indices)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU]
    ) as prof:
        step.run(indices)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ------------------------------------------------------------------- report


@dataclass
class Workload:
    """What was timed, for the report."""

    config: ModelConfig
    pairs: Pairs
    batch_tokens: int
    epoch_batches: int
    timed: list[Batch]


def format_report(
    command: str,
    workload: Workload,
    flop_check: tuple[Batch, int, int],
    results: list[ThreadResult],
    profile: str,
) -> str:
    config, timed = workload.config, workload.timed
    parameters = sum(p.numel() for p in Seq2Seq(config).parameters())
    tokens = sum(batch.target_tokens for batch in timed)
    padded = sum(batch.tgt_output.numel() for batch in timed)
    executed = sum(training_flops(config, Positions.executed(b)) for b in timed)
    useful = sum(training_flops(config, Positions.useful(b)) for b in timed)
    parts: dict[str, int] = {}
    for batch in timed:
        for name, flops in forward_matmul_flops(
            config, Positions.executed(batch)
        ).items():
            parts[name] = parts.get(name, 0) + flops
    check_batch, analytic, counted = flop_check
    rows = [batch.tgt_input.size(0) for batch in timed]
    lengths = [batch.tgt_input.size(1) for batch in timed]
    lines = [
        f"command: {command}",
        f"torch {torch.__version__}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}, {os.cpu_count()} CPUs",
        f"model: {parameters:,} parameters, {_config_text(config)}",
        f"corpus: {len(workload.pairs.indices):,} training pairs, "
        f"{workload.pairs.segmentation}",
        f"batches: {workload.epoch_batches:,} in an epoch, at most "
        f"{workload.batch_tokens:,} padded tokens each; {len(timed)} timed, at evenly "
        f"spaced length ranks: {min(rows)}-{max(rows)} sentences, longest target "
        f"{min(lengths)}-{max(lengths)} pieces, {tokens / len(timed):,.0f} target "
        f"tokens a batch, {100 * (1 - tokens / padded):.1f}% of target positions padding",
        "step: collate, forward, label-smoothed loss (0.1), backward, clip at 1.0, "
        "Adam 2e-3 (as _TrainingLoop._train_step in float32)",
        "",
        "floating-point operations of the matrix products in a training step "
        "(3 x forward), per target token:",
        f"  executed (padding included) {executed / tokens / 1e6:.1f} MFLOP, "
        f"useful (no padding) {useful / tokens / 1e6:.1f} MFLOP",
    ]
    forward_total = sum(parts.values())
    for name, flops in parts.items():
        lines.append(
            f"    {name:<20} {3 * flops / tokens / 1e6:6.2f} MFLOP "
            f"({100 * flops / forward_total:4.1f}%)"
        )
    lines.append(
        f"  check on one batch ({check_batch.tgt_input.size(0)} x "
        f"{check_batch.tgt_input.size(1)} target, {check_batch.src.size(1)} source): "
        f"analytic {analytic / 1e9:.2f} GFLOP, FlopCounterMode "
        f"{counted / 1e9:.2f} GFLOP ({100 * (counted / analytic - 1):+.1f}%)"
    )
    reference = Positions(1, 30, 30, 30, 900)
    lines.append(
        "  one pair of 30 source and 30 target positions: "
        f"{training_flops(config, reference) / 30 / 1e6:.1f} MFLOP per target token"
    )
    lines.extend(["", _throughput_table(results, len(timed))])
    lines.append("matmul GFLOP/s (wall / process CPU / main-thread CPU):")
    for result in results:
        for rate in result.matmul:
            figures = " / ".join(f"{rate.gflops[clock]:.1f}" for clock in CLOCKS)
            lines.append(f"  {result.threads} thread(s) {rate.shape:<28} {figures}")
    for result in results:
        lines.append(
            f"step wall ms at {result.threads} thread(s): median "
            f"{statistics.median(result.step_wall_ms):,.0f}, range "
            f"{min(result.step_wall_ms):,.0f}-{max(result.step_wall_ms):,.0f}"
        )
    lines.extend(["", _verdict(results)])
    if profile:
        lines.extend(["", "profile of one step, 1 thread:", profile])
    return "\n".join(lines)


def _throughput_table(results: list[ThreadResult], steps: int) -> str:
    lines = [
        f"{'threads':>7} {'clock':>15} {'tgt tok/s':>9} {'ms/step':>8} {'GFLOP/s':>8} "
        f"{'matmul GFLOP/s':>14} {'share':>6}  load before / after"
    ]
    for result in results:
        for clock in CLOCKS:
            seconds = getattr(result.clock, clock)
            achieved, machine = result.achieved_gflops(clock), result.machine_gflops(
                clock
            )
            lines.append(
                f"{result.threads:>7} {CLOCK_NAMES[clock]:>15} "
                f"{result.tokens_per_second(clock):>9,.0f} "
                f"{1000 * seconds / steps:>8,.0f} {achieved:>8.1f} {machine:>14.1f} "
                f"{100 * achieved / machine:>5.1f}%  "
                f"{result.load_before} / {result.load_after}"
            )
    return "\n".join(lines)


def _verdict(results: list[ThreadResult]) -> str:
    bar = BAR_FACTOR * JOEYNMT_TOKENS_PER_SECOND
    best = max(results, key=lambda result: result.tokens_per_second("wall"))
    return (
        f"JoeyNMT 2.3 (issue 4): {JOEYNMT_TOKENS_PER_SECOND:,.0f} target tokens/s on two "
        f"idle cores; the bar, {BAR_FACTOR:g} x that: {bar:,.0f}. Best by wall time: "
        f"{best.tokens_per_second('wall'):,.0f} at {best.threads} thread(s) "
        f"({best.tokens_per_second('wall') / JOEYNMT_TOKENS_PER_SECOND:.2f} x JoeyNMT). "
        "On a quiet machine the wall rows are the figures; on a loaded one, process "
        "CPU at 1 thread is what an idle core does, and main-thread CPU at 2 threads "
        "estimates the wall time two idle cores would take (the main thread runs "
        "everything serial and its share of every parallel operation)."
    )


def _config_text(config: ModelConfig) -> str:
    defaults = ModelConfig(config.src_vocab_size, config.tgt_vocab_size)
    changed = [
        f"{field.name}={getattr(config, field.name)}"
        for field in dataclasses.fields(config)
        if field.name in ("src_vocab_size", "tgt_vocab_size")
        or getattr(config, field.name) != getattr(defaults, field.name)
    ]
    return ", ".join(changed)


# ---------------------------------------------------------------- arguments


def apply_overrides(config: ModelConfig, overrides: Sequence[str]) -> ModelConfig:
    """``KEY=VALUE`` pairs over the config's fields, values of the field's type."""
    fields = {field.name: field for field in dataclasses.fields(config)}
    changes: dict[str, object] = {}
    for override in overrides:
        key, separator, text = override.partition("=")
        if not separator or key not in fields:
            raise MtcError(
                f"--config {override!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(fields)}"
            )
        kind = type(getattr(config, key))
        try:
            if kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                changes[key] = text.lower() == "true"
            else:
                changes[key] = kind(text)
        except ValueError:
            raise MtcError(
                f"--config {override!r}: {key} takes a {kind.__name__}"
            ) from None
    changed = dataclasses.replace(config, **changes)
    changed.validate()
    return changed


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="NMT training throughput: target tokens/s, FLOPs, matmul share"
    )
    parser.add_argument(
        "--prepared",
        type=Path,
        default=DEFAULT_PREPARED,
        help="prepared directory (default: %(default)s)",
    )
    parser.add_argument(
        "--subwords",
        type=Path,
        default=DEFAULT_SUBWORDS,
        help="directory with spm.{lang}.model (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="thread counts to measure (default: 1 2)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=16,
        help="timed steps per thread count (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed steps first (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=1500,
        help="padded tokens per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="ModelConfig fields over the JoeyNMT-sized model",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add a torch.profiler table of one step at 1 thread",
    )
    args = parser.parse_args(argv)
    for name in ("steps", "batch_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or min(args.threads) < 1:
        parser.error("--warmup must be at least 0 and --threads at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    command = " ".join(["python3", *sys.argv]) if argv is None else " ".join(argv)
    started = time.perf_counter()
    try:
        config = apply_overrides(joeynmt_sized_config(), args.config)
        pairs = load_pairs(args.prepared, args.subwords, config)
    except MtcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sample, epoch_batches = sample_batches(
        pairs, args.batch_tokens, args.steps + args.warmup
    )
    # the warm-up batches come from the middle of the sample, the rest is timed
    middle = len(sample) // 2
    warmup = sample[middle : middle + args.warmup]
    timed_indices = sample[:middle] + sample[middle + args.warmup :]
    timed = [
        collate(indices, pairs.sources, pairs.targets) for indices in timed_indices
    ]
    workload = Workload(config, pairs, args.batch_tokens, epoch_batches, timed)
    median_batch = timed[len(timed) // 2]

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    counted = counted_training_flops(Seq2Seq(config), median_batch)
    analytic = training_flops(config, Positions.executed(median_batch))
    results = [
        benchmark_threads(
            threads,
            config,
            pairs,
            warmup,
            timed,
            timed_indices,
            median_batch.tgt_input.size(0),
        )
        for threads in args.threads
    ]
    profile = ""
    if args.profile:
        profile = profile_step(config, pairs, timed_indices[len(timed) // 2], 30)
    print(
        format_report(
            command, workload, (median_batch, analytic, counted), results, profile
        )
    )
    logger.info("benchmark took %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
