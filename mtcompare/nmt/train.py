"""Training the attentional LSTM translation model within a time budget.

The model (:mod:`mtcompare.nmt.model`) is trained by teacher forcing: given
the source and the reference target so far, it predicts the next target
piece, and the loss is the cross-entropy of the reference pieces, smoothed
towards the uniform distribution (label smoothing, Szegedy et al. 2016,
section 7): with smoothing epsilon e over a vocabulary of V pieces the target
distribution is (1 - e) on the reference piece plus e / V on every piece, so

    loss = (1 - e) * (-log p(reference)) + e * mean over pieces of (-log p),

summed over the real (not padding) target positions. Parameters are updated
with Adam (Kingma & Ba 2015) after clipping the gradient norm, which keeps
recurrent networks from the occasional exploding update (Pascanu et al.
2013). The output layer's bias starts at the log unigram frequencies of the
target pieces, so training does not spend its first steps learning them.

Learning rate. During the first ``warmup_steps`` updates the rate rises
linearly, lr * step / warmup_steps (Goyal et al. 2017, section 2.2, "gradual
warmup"; early Adam steps on a fresh recurrent network are the ones that
saturate its tanh units). After that it changes only on a plateau: when the
watched dev score (``validation_metric``: perplexity, or BLEU) has not
improved for ``patience`` validations, the rate is multiplied by
``lr_decay``, never below ``min_lr`` (the schedule of PyTorch's
``ReduceLROnPlateau``, which JoeyNMT uses by default). With
``early_stopping_patience`` N > 0 training stops once the watched score has
not improved for N validations.

Every ``validate_every`` steps the model is scored on the development set:
perplexity by teacher forcing, and BLEU of greedy (or ``dev_beam_size``)
translations of the first ``dev_bleu_sentences`` sentences, on tokenised
text, with the output capped at a multiple of the source length so
validation stays cheap. Checkpoints are written atomically (a temporary
file, then a rename), so Ctrl-C or a kill never leaves half a file:
``last.pt`` (the latest, with the optimizer state), ``best.pt`` (best dev
BLEU so far, weights only) and, with ``keep_best`` K > 1, the K best by dev
BLEU as ``best-step-N.pt``. With ``average_checkpoints`` the element-wise
mean of those K (Junczys-Dowmunt et al. 2016, "The AMU-UEDIN Submission to
the WMT16 News Translation Task") is scored on the dev set at
the end and written as ``averaged.pt``; the model directory translates with
whichever of it and ``best.pt`` has the higher dev BLEU, and the log says
which.

A run stops when ``max_minutes`` of wall time (validation included) or
``max_steps`` steps are spent. An interrupted run (Ctrl-C, or SIGTERM as
``kill`` and ``torchrun`` send) writes ``last.pt`` before it stops; started
again on the same output directory it resumes from ``last.pt`` and continues
to the configured totals (it does not start them anew). Seeds fix the
initial weights, the batches of every epoch and dropout, and the random
generator state travels in every checkpoint, so a resumed CPU run takes the
same steps as an uninterrupted one.

On a GPU (``device`` auto or cuda) training can run in mixed precision
(``precision`` bfloat16, or float16 with dynamic loss scaling so small
gradients do not underflow; Micikevicius et al. 2018): the forward pass and
the loss run under ``torch.autocast``, the parameters and the optimizer stay
in float32. Started by ``torchrun --nproc_per_node N -m mtcompare train nmt
...``, the trainer reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, joins
the process group (NCCL on CUDA, gloo on CPU) and wraps the model in
``DistributedDataParallel``, which averages the gradients of the processes'
disjoint batches; every process then takes the same update. Process 0 alone
validates, writes files and logs, and it decides for all of them when to
stop and what the learning rate is.

The model directory is complete when ``model.json`` exists, which is
written last. Resuming a finished model keeps its ``model.json``: the
architecture is checked before anything is written, and ``best.pt`` is only
ever replaced atomically by a better checkpoint of the same network, so the
directory stays a usable model however the new run ends.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import copy
import dataclasses
import json
import logging
import math
import random
import re
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import sacrebleu
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mtcompare.data.prepare import prepared_languages
from mtcompare.data.subword import EOS_ID, MIN_VOCAB_SIZE, PAD_ID, SubwordModel
from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open, read_lines, write_text
from mtcompare.nmt.batching import (
    collate,
    filter_by_length,
    make_batches,
    padding_share,
    shard_batches,
    train_subword_models,
)
from mtcompare.nmt.model import ModelConfig, Seq2Seq
from mtcompare.nmt.search import SearchConfig, translate_ids
from mtcompare.progress import format_duration
from mtcompare.translator import MODEL_INFO, write_model_info

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
AVERAGED_CHECKPOINT = "averaged.pt"
CONFIG_FILE = "config.json"
SUBWORD_TYPES = ("unigram", "bpe")
VALIDATION_METRICS = ("perplexity", "bleu")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bfloat16", "float16")
AUTOCAST_TYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
# ModelConfig fields that change no parameter's shape: a resumed run may change them
UNSHAPED_MODEL_FIELDS = (
    "dropout",
    "src_word_dropout",
    "tgt_word_dropout",
    "word_dropout_mode",
)
# NMTConfig fields that decide the subword vocabularies: a resumed run may not
SUBWORD_FIELDS = ("vocab_size", "subword_type", "joint_vocabulary")
RESUME_REMEDY = "cannot resume from it, train into a new output directory"
RETRAIN_REMEDY = "train the NMT model again with 'mtcompare train nmt'"


@dataclass
class NMTConfig:
    """Everything that decides an NMT model and how it is trained and used."""

    vocab_size: int = 8000  # SentencePiece pieces per language (soft limit)
    subword_type: str = "unigram"
    joint_vocabulary: bool = False  # one SentencePiece model learned on both sides
    embedding_size: int = 256
    hidden_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    attention: str = "general"  # dot, general or additive
    decoder_hidden_size: int = 0  # 0: the same as hidden_size
    encoder_connection: str = "plain"  # between layers: plain, residual, highway, dense
    decoder_connection: str = "plain"
    dropout: float = 0.2
    src_word_dropout: float = 0.0  # probability of dropping a whole source piece
    tgt_word_dropout: float = 0.0
    word_dropout_mode: str = "unk"  # a dropped piece reads as <unk> ("unk") or 0s
    output_projection: bool = False  # attentional state -> embedding_size first
    tie_target_embeddings: bool = False  # output layer shares the target embeddings
    # 2e-3 reached dev perplexity 28 in 196 steps on the Bible where 1e-3 reached 44
    lr: float = 2e-3
    warmup_steps: int = 0  # the rate rises linearly to lr over this many updates
    validation_metric: str = "perplexity"  # watched for decay and early stopping
    patience: int = 1  # validations without improvement before each decay
    lr_decay: float = 0.5  # factor applied to the rate on a plateau
    min_lr: float = 1e-6  # the rate never decays below this
    early_stopping_patience: int = 0  # stop after N validations without improvement
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    batch_tokens: int = 2500  # padded pieces per batch (per process)
    max_length: int = 100  # longest training pair in pieces; longer pairs are skipped
    max_minutes: float = 30.0  # wall-time budget of the whole run, validation included
    max_steps: int = 0  # 0: no step limit, only the time budget
    validate_every: int = 250  # steps
    dev_bleu_sentences: int = 200
    dev_perplexity_sentences: int = 1000
    dev_beam_size: int = 1  # beam of the validation translations; 1 is greedy
    keep_best: int = 1  # checkpoints kept by dev BLEU (best-step-N.pt when > 1)
    average_checkpoints: bool = False  # translate with the mean of the kept ones
    log_every_seconds: float = 30.0
    seed: int = 1
    threads: int = 1
    device: str = "auto"  # auto: the GPU when PyTorch sees one, else the CPU
    precision: str = "float32"  # float32, or mixed: bfloat16, float16 (GPU)
    beam_size: int = 5
    length_penalty: float = 1.0
    length_normalisation: str = "length"  # lp(n) = n^alpha, or "gnmt" ((5+n)/6)^alpha
    max_length_ratio: float = 1.5
    max_length_extra: int = 10

    def validate(self) -> None:
        """Raise :class:`MtcError` on the first invalid value."""
        for name, valid in (
            ("subword_type", SUBWORD_TYPES),
            ("validation_metric", VALIDATION_METRICS),
            ("device", DEVICES),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in valid:
                raise MtcError(
                    f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}"
                )
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise MtcError(
                f"NMT option vocab_size must be at least {MIN_VOCAB_SIZE} (4 reserved "
                "pieces, the word boundary and the characters of the text), "
                f"got {self.vocab_size}"
            )
        positive = (
            "batch_tokens",
            "max_length",
            "validate_every",
            "dev_bleu_sentences",
            "dev_perplexity_sentences",
            "dev_beam_size",
            "keep_best",
            "patience",
            "threads",
            "beam_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise MtcError(
                    f"NMT option {name} must be at least 1, got {getattr(self, name)}"
                )
        for name in ("warmup_steps", "early_stopping_patience", "max_steps"):
            if getattr(self, name) < 0:
                raise MtcError(
                    f"NMT option {name} must be at least 0 (0: off), "
                    f"got {getattr(self, name)}"
                )
        if self.lr <= 0 or self.max_minutes <= 0 or self.clip_norm <= 0:
            raise MtcError("NMT options lr, max_minutes and clip_norm must be positive")
        if not 0 < self.lr_decay <= 1:
            raise MtcError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.min_lr <= self.lr:
            raise MtcError(
                f"min_lr must be in [0, lr] = [0, {self.lr}], got {self.min_lr}"
            )
        if self.average_checkpoints and self.keep_best < 2:
            raise MtcError(
                "average_checkpoints averages the keep_best best checkpoints, so it "
                f"needs keep_best of at least 2, got {self.keep_best}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise MtcError(
                f"label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        self.model_config(1, 1).validate()
        self.search_config().validate()

    def search_config(self, beam_size: int | None = None) -> SearchConfig:
        """Search settings; ``beam_size`` overrides the configured one."""
        return SearchConfig(
            beam_size=beam_size or self.beam_size,
            length_penalty=self.length_penalty,
            max_length_ratio=self.max_length_ratio,
            max_length_extra=self.max_length_extra,
            length_normalisation=self.length_normalisation,
        )

    def model_config(self, src_vocab_size: int, tgt_vocab_size: int) -> ModelConfig:
        return ModelConfig(
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            embedding_size=self.embedding_size,
            hidden_size=self.hidden_size,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            dropout=self.dropout,
            attention=self.attention,
            decoder_hidden_size=self.decoder_hidden_size,
            encoder_connection=self.encoder_connection,
            decoder_connection=self.decoder_connection,
            src_word_dropout=self.src_word_dropout,
            tgt_word_dropout=self.tgt_word_dropout,
            word_dropout_mode=self.word_dropout_mode,
            output_projection=self.output_projection,
            tie_target_embeddings=self.tie_target_embeddings,
        )


@dataclass
class TrainingProgress:
    """Where training stands; saved in every checkpoint so a run can resume."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_seconds: float = 0.0
    lr: float = 0.0  # the rate after plateau decays; warm-up scales it per step
    best_bleu: float = -1.0
    best_step: int = 0
    best_perplexity: float = math.inf
    validated_step: int = -1
    # per validation: step, train_loss (per target token since the last one), lr,
    # dev_perplexity, dev_bleu
    history: list[dict[str, float]] = field(default_factory=list)
    # the learning-rate schedule: best value of validation_metric so far, and the
    # validations since it last improved (validations in the warm-up not counted)
    plateau_best: float | None = None
    validations_without_improvement: int = 0
    # the keep_best best validations by dev BLEU, best first: {"step", "dev_bleu"}
    kept_checkpoints: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Corpus:
    src_lang: str
    tgt_lang: str
    train_src: list[list[int]]
    train_tgt: list[list[int]]
    train_indices: list[int]
    dev_src: list[list[int]]
    dev_tgt: list[list[int]]
    dev_references: list[str]  # tokenised reference lines
    tgt_subwords: SubwordModel


def train_nmt(
    prepared_dir: str | Path, out_dir: str | Path, config: NMTConfig
) -> Seq2Seq:
    """Train an NMT model on a prepared directory into ``out_dir``.

    Resumes from ``out_dir/last.pt`` when it exists. Writes ``best.pt``,
    ``last.pt``, the SentencePiece models, ``config.json``, the preprocessors
    and, last, ``model.json``. Under ``torchrun`` every process calls it and
    process 0 writes the files. Returns the network as training left it (the
    same in every process).
    """
    started = time.monotonic()
    config.validate()
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    torch.set_num_threads(config.threads)
    ranks = Ranks.from_environment()
    device = training_device(config, ranks)
    with _quiet_unless_main(ranks):
        src_lang, tgt_lang = _languages(prepared_dir)
        _check_out_dir(out_dir)
        last_path = out_dir / LAST_CHECKPOINT
        checkpoint = (
            _resume_checkpoint(last_path, config, src_lang, tgt_lang, device)
            if last_path.is_file()
            else None
        )
        logger.info("NMT config: %s", json.dumps(asdict(config)))
        logger.info(
            "training on %s in %s with %d thread(s)%s",
            device,
            config.precision,
            config.threads,
            f", {ranks.world_size} processes" if ranks.distributed else "",
        )
        with _process_group(ranks, device):
            corpus = _load_corpus(
                prepared_dir,
                out_dir,
                config,
                (src_lang, tgt_lang),
                checkpoint,
                ranks,
                device,
            )
            trainee = _build_trainee(out_dir, config, corpus, device)
            progress = TrainingProgress(lr=config.lr)
            if checkpoint is not None:
                progress = _resume(checkpoint, last_path, trainee, config, ranks)
            _seed_process(config.seed, ranks, progress.step)
            loop = _TrainingLoop(
                trainee, corpus, config, progress, out_dir, ranks, started
            )
            with _termination_as_interrupt():
                loop.run()
            if ranks.is_main:
                _finish(prepared_dir, out_dir, config, trainee, loop.progress, corpus)
    return trainee.model


@dataclass
class Ranks:
    """This process's place in a ``torchrun`` launch; alone, rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # which GPU of this machine the process uses

    @classmethod
    def from_environment(cls) -> "Ranks":
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun sets them."""
        values = {}
        for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
            text = os.environ.get(name, str(default))
            try:
                values[name] = int(text)
            except ValueError:
                raise MtcError(
                    f"environment variable {name}={text!r} is not a whole number; "
                    "start several training processes with 'torchrun "
                    "--nproc_per_node N -m mtcompare train nmt ...'"
                ) from None
        ranks = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
        if ranks.world_size < 1 or not 0 <= ranks.rank < ranks.world_size:
            raise MtcError(
                f"RANK={ranks.rank} and WORLD_SIZE={ranks.world_size} do not fit "
                "(0 <= RANK < WORLD_SIZE); let torchrun set them"
            )
        return ranks

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Process 0 validates, writes every file and logs."""
        return self.rank == 0


def training_device(config: NMTConfig, ranks: Ranks) -> torch.device:
    """The device ``config.device`` asks for, checked against what is there."""
    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise MtcError(
            "device is cuda, but PyTorch sees no CUDA GPU; set device=cpu or auto"
        )
    if config.device == "cpu" or not cuda:
        if config.precision == "float16":
            # oneDNN has no float16 LSTM; loss scaling is for GPU float16 too
            raise MtcError(
                "precision float16 needs a CUDA GPU and training runs on the CPU; "
                "use precision bfloat16 or float32 there"
            )
        return torch.device("cpu")
    if ranks.local_rank >= torch.cuda.device_count():
        raise MtcError(
            f"LOCAL_RANK {ranks.local_rank}, but PyTorch sees "
            f"{torch.cuda.device_count()} GPU(s); start at most that many processes "
            "per machine"
        )
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


@contextlib.contextmanager
def _quiet_unless_main(ranks: Ranks) -> Iterator[None]:
    """Let only process 0 log below warnings, so a line appears once."""
    if ranks.is_main:
        yield
        return
    package_logger = logging.getLogger("mtcompare")
    level = package_logger.level
    package_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        package_logger.setLevel(level)


@contextlib.contextmanager
def _process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the processes of a torchrun launch (NCCL on GPUs, gloo on CPUs)."""
    if not ranks.distributed:
        yield
        return
    missing = [
        name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ
    ]
    if missing:
        raise MtcError(
            f"WORLD_SIZE is {ranks.world_size} but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; "
            "start the processes with 'torchrun --nproc_per_node N -m mtcompare "
            "train nmt ...', which sets them"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size)
    logger.info("joined %d training processes (%s backend)", ranks.world_size, backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _run_on_main_process(
    ranks: Ranks, device: torch.device, work: Callable[[], object]
) -> None:
    """Call ``work()`` on process 0 while the others wait; if it fails, all stop."""
    if not ranks.distributed:
        work()
        return
    failed = torch.zeros(1, device=device)
    error: BaseException | None = None
    if ranks.is_main:
        try:
            work()
        except BaseException as caught:  # raised again below, once the others know
            error = caught
            failed.fill_(1)
    dist.broadcast(failed, src=0)
    if error is not None:
        raise error
    if float(failed):
        raise MtcError("training process 0 failed; its error message says why")


@contextlib.contextmanager
def _termination_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``kill``, or torchrun stopping its processes) as Ctrl-C, so
    that it too saves ``last.pt`` before the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signal_number: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        # None: the handler before was not set from Python; the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def load_checkpoint(
    path: Path,
    device: torch.device,
    remedy: str = RETRAIN_REMEDY,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train_nmt`.

    Anything wrong with the file, or a missing ``required`` entry, is an
    :class:`MtcError` naming the file and ending in ``remedy``.
    """
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MtcError(f"{path}: missing; {remedy}") from None
    except OSError as error:
        raise MtcError(f"{path}: cannot read it ({error.strerror}); {remedy}") from None
    except Exception as error:
        # a damaged file fails in many ways (unpickling, zip, decoding errors),
        # which all mean the same to the user
        raise MtcError(
            f"{path}: not a readable PyTorch checkpoint{short_reason(error)}; {remedy}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise MtcError(f"{path}: not an NMT checkpoint; {remedy}")
    for key in required:
        if key == "rng_state":
            expected_type: type = torch.Tensor
        else:
            expected_type = dict
        if not isinstance(checkpoint.get(key), expected_type):
            raise MtcError(f"{path}: not an NMT checkpoint (no {key!r}); {remedy}")
    return checkpoint


def restore_model(
    checkpoint: dict[str, Any], path: Path, device: torch.device, remedy: str
) -> tuple[Seq2Seq, TrainingProgress]:
    """The network and training progress saved in ``checkpoint``, read from ``path``."""
    try:
        model = Seq2Seq(ModelConfig(**checkpoint["model_config"]))
        model.load_state_dict(checkpoint["model"])
        progress = TrainingProgress(**checkpoint["progress"])
    except (MtcError, RuntimeError, TypeError, ValueError) as error:
        raise MtcError(
            f"{path}: its network does not fit its model_config"
            f"{short_reason(error)}; {remedy}"
        ) from None
    return model.to(device), progress


def short_reason(error: BaseException) -> str:
    """`` (first clause of the message)``, or ``""`` when the message says nothing
    a user can read (a pickle ``KeyError: 101``); PyTorch's run to many lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.startswith("Error(s) in loading state_dict") and len(lines) > 1:
        first = lines[1]  # "size mismatch for encoder.weight_hh_l0: copying a ..."
    clause = re.split(r"[.:;] ", first, maxsplit=1)[0].rstrip(".:")
    if not re.search(r"[A-Za-z]{3}", clause):
        return ""
    return f" ({clause if len(clause) <= 80 else clause[:77] + '...'})"


def save_checkpoint(path: Path, contents: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    with atomic_open(path, "wb") as stream:
        torch.save(contents, stream)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an output directory that a fresh run would spoil."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MtcError(f"{out_dir}: not a directory; give another --out")
    finished = (out_dir / MODEL_INFO).is_file()
    if finished and not (out_dir / LAST_CHECKPOINT).is_file():
        raise MtcError(
            f"{out_dir}: holds a finished model but no {LAST_CHECKPOINT} to resume "
            "from; train into a new output directory"
        )


def _resume_checkpoint(
    path: Path,
    config: NMTConfig,
    src_lang: str,
    tgt_lang: str,
    device: torch.device,
) -> dict[str, Any]:
    """Read ``last.pt`` and check that it fits ``config``; nothing is written yet."""
    checkpoint = load_checkpoint(
        path,
        device,
        RESUME_REMEDY,
        required=("model", "optimizer", "model_config", "progress", "rng_state"),
    )
    _check_subword_settings(checkpoint, path, config)
    out_dir = path.parent
    configured = asdict(
        config.model_config(
            _vocab_size(out_dir, src_lang), _vocab_size(out_dir, tgt_lang)
        )
    )
    saved = _with_model_defaults(checkpoint["model_config"])
    unknown = sorted(set(saved) - set(configured))
    if unknown:
        raise MtcError(
            f"{path}: the checkpoint's model has settings this version does not know "
            f"({', '.join(unknown)}); {RESUME_REMEDY}"
        )
    changed = [name for name, value in configured.items() if saved[name] != value]
    # dropout may change between runs; the sizes of the parameters may not
    fixed = [name for name in changed if name not in UNSHAPED_MODEL_FIELDS]
    if fixed:
        differences = ", ".join(
            f"{name} {saved[name]} there, {configured[name]} configured"
            for name in fixed
        )
        raise MtcError(
            f"{path}: the checkpoint's model differs from the configured one "
            f"({differences}); train into a new output directory"
        )
    for name in changed:
        logger.info(
            "%s: %s was %s, the run resumes with %s as configured",
            path,
            name,
            saved[name],
            configured[name],
        )
    return checkpoint


def _with_model_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved model config with the defaults of fields added since it was
    written (they describe the network it was: a new field's default keeps the
    network as it was before the field existed)."""
    defaults = {
        entry.name: entry.default
        for entry in dataclasses.fields(ModelConfig)
        if entry.default is not dataclasses.MISSING
    }
    return {**defaults, **saved}


def _check_subword_settings(
    checkpoint: dict[str, Any], path: Path, config: NMTConfig
) -> None:
    """Refuse to resume with other subword settings than the saved models were
    learned with: the run would silently keep the old vocabularies."""
    saved = checkpoint.get("subwords")
    if not isinstance(saved, dict):
        logger.warning(
            "%s was written before checkpoints recorded their subword settings, so "
            "%s cannot be checked; the run keeps the SentencePiece models of %s",
            path,
            ", ".join(SUBWORD_FIELDS),
            path.parent,
        )
        return
    changed = [
        name for name in SUBWORD_FIELDS if saved.get(name) != getattr(config, name)
    ]
    if changed:
        differences = ", ".join(
            f"{name} {saved.get(name)} there, {getattr(config, name)} configured"
            for name in changed
        )
        raise MtcError(
            f"{path}: the checkpoint's subword vocabularies were learned with other "
            f"settings ({differences}); set them back, or train into a new output "
            "directory"
        )


def _languages(prepared_dir: Path) -> tuple[str, str]:
    src_lang, tgt_lang = prepared_languages(prepared_dir)
    for lang in (src_lang, tgt_lang):
        if not (prepared_dir / f"preprocess.{lang}.json").is_file():
            raise MtcError(
                f"{prepared_dir / f'preprocess.{lang}.json'}: missing; "
                "rerun 'mtcompare prepare'"
            )
    return src_lang, tgt_lang


def _load_corpus(
    prepared_dir: Path,
    out_dir: Path,
    config: NMTConfig,
    languages: tuple[str, str],
    checkpoint: dict[str, Any] | None,
    ranks: Ranks,
    device: torch.device,
) -> _Corpus:
    """Read token lines, learn (or reload) SentencePiece, turn lines into piece ids.

    A fresh run learns the SentencePiece models on process 0; every process
    then reads them from ``out_dir``.
    """
    src_lang, tgt_lang = languages
    train_src_lines = read_lines(prepared_dir / f"train.tok.{src_lang}")
    train_tgt_lines = read_lines(prepared_dir / f"train.tok.{tgt_lang}")
    dev_src_lines = read_lines(prepared_dir / f"dev.tok.{src_lang}")
    dev_tgt_lines = read_lines(prepared_dir / f"dev.tok.{tgt_lang}")
    for name, a, b in (
        ("train", train_src_lines, train_tgt_lines),
        ("dev", dev_src_lines, dev_tgt_lines),
    ):
        if len(a) != len(b):
            raise MtcError(
                f"{prepared_dir}: {name}.tok.{src_lang} has {len(a):,} lines but "
                f"{name}.tok.{tgt_lang} has {len(b):,}; rerun 'mtcompare prepare'"
            )
    if not dev_src_lines:
        raise MtcError(
            f"{prepared_dir / f'dev.tok.{src_lang}'}: the dev set is empty, but NMT "
            "training validates on it; run 'mtcompare prepare' again with a dev set "
            "(--dev-size, or --dev-src and --dev-tgt)"
        )
    if checkpoint is None:  # resuming keeps the checkpoint's pieces
        _run_on_main_process(
            ranks,
            device,
            lambda: train_subword_models(
                train_src_lines,
                train_tgt_lines,
                out_dir,
                languages,
                config.vocab_size,
                config.subword_type,
                config.joint_vocabulary,
                config.threads,
            ),
        )
    subwords = {
        lang: SubwordModel.load(out_dir / f"spm.{lang}.model") for lang in languages
    }
    start = time.monotonic()
    train_src = [subwords[src_lang].encode_ids(line) for line in train_src_lines]
    train_tgt = [subwords[tgt_lang].encode_ids(line) for line in train_tgt_lines]
    dev_src = [
        subwords[src_lang].encode_ids(line)[: config.max_length]
        for line in dev_src_lines
    ]
    dev_tgt = [subwords[tgt_lang].encode_ids(line) for line in dev_tgt_lines]
    pieces = sum(map(len, train_tgt))
    logger.info(
        "segmented %s training pairs into subwords in %.1f s: %.2f %s pieces per token",
        f"{len(train_src):,}",
        time.monotonic() - start,
        pieces / max(1, sum(len(line.split()) for line in train_tgt_lines)),
        tgt_lang,
    )
    indices = filter_by_length(train_src, train_tgt, config.max_length)
    if not indices:
        raise MtcError(
            f"{prepared_dir}: no training pairs left after the length filter"
        )
    return _Corpus(
        src_lang,
        tgt_lang,
        train_src,
        train_tgt,
        indices,
        dev_src,
        dev_tgt,
        dev_tgt_lines,
        subwords[tgt_lang],
    )


def _vocab_size(out_dir: Path, lang: str) -> int:
    return SubwordModel.load(out_dir / f"spm.{lang}.model").vocab_size


def _target_unigram(corpus: _Corpus, vocab_size: int) -> torch.Tensor:
    """Relative frequency of each target piece (end symbol included), smoothed.

    Logs its perplexity: the level of a model that has learned only piece
    frequencies, which a learning model leaves behind within a few hundred steps.
    """
    pieces = [piece for i in corpus.train_indices for piece in corpus.train_tgt[i]]
    counts = torch.bincount(torch.tensor(pieces), minlength=vocab_size).double()
    counts[EOS_ID] += len(corpus.train_indices)
    counts += 1  # add-one smoothing: every piece stays possible
    frequencies = counts / counts.sum()  # tgt_vocab
    entropy = -float((frequencies * frequencies.log()).sum())
    logger.info(
        "unigram perplexity of training targets: %.1f (a model still at this level "
        "has learned only piece frequencies)",
        math.exp(entropy),
    )
    return frequencies


class MixedPrecision:
    """Autocast and loss scaling for one ``precision`` setting on one device.

    float32 turns both off. bfloat16 has float32's range, so it needs no loss
    scaling; float16 does: the loss is multiplied by a large factor before the
    backward pass so that small gradients survive in float16, and the
    gradients are divided by it again (``unscale_``) before clipping; a step
    whose gradients overflowed is skipped and the factor lowered (PyTorch's
    ``GradScaler``, after Micikevicius et al. 2018, section 3.2).
    """

    def __init__(self, precision: str, device: torch.device):
        self.precision = precision
        self.device_type = device.type
        self.dtype = AUTOCAST_TYPES[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "float16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass and the loss run in."""
        return torch.autocast(
            self.device_type, dtype=self.dtype, enabled=self.dtype is not None
        )


@dataclass
class _Trainee:
    """The network and what updates it."""

    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    precision: MixedPrecision
    device: torch.device


def _build_trainee(
    out_dir: Path, config: NMTConfig, corpus: _Corpus, device: torch.device
) -> _Trainee:
    """A fresh network from the seed, its optimizer and its precision settings."""
    model_config = config.model_config(
        _vocab_size(out_dir, corpus.src_lang), _vocab_size(out_dir, corpus.tgt_lang)
    )
    unigram = _target_unigram(corpus, model_config.tgt_vocab_size)
    torch.manual_seed(config.seed)
    model = Seq2Seq(model_config)
    with torch.no_grad():
        # start from the unigram distribution instead of the uniform one, which
        # saves the first steps of learning piece frequencies
        model.output.bias.copy_(unigram.log())
    model.to(device)
    logger.info(
        "model: %s parameters, %s",
        f"{sum(p.numel() for p in model.parameters()):,}",
        json.dumps(asdict(model_config)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    return _Trainee(model, optimizer, MixedPrecision(config.precision, device), device)


def _resume(
    checkpoint: dict[str, Any],
    path: Path,
    trainee: _Trainee,
    config: NMTConfig,
    ranks: Ranks,
) -> TrainingProgress:
    """Put the state saved in ``checkpoint`` (read from ``path``) back in place."""
    try:
        trainee.model.load_state_dict(checkpoint["model"])
        trainee.optimizer.load_state_dict(checkpoint["optimizer"])
        progress = TrainingProgress(**checkpoint["progress"])
        torch.set_rng_state(checkpoint["rng_state"].cpu())
        if trainee.device.type == "cuda" and "cuda_rng_state" in checkpoint:
            torch.cuda.set_rng_state(checkpoint["cuda_rng_state"].cpu())
        if trainee.precision.scaler.is_enabled() and "scaler" in checkpoint:
            trainee.precision.scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, TypeError, ValueError, KeyError) as error:
        raise MtcError(
            f"{path}: its training state does not fit the model"
            f"{short_reason(error)}; {RESUME_REMEDY}"
        ) from None
    totals = [f"{config.max_minutes:g} minutes"]
    if config.max_steps:
        totals.append(f"{config.max_steps:,} steps")
    logger.info(
        "resuming from %s: step %s, epoch %d, %s of the budget used, best dev BLEU "
        "%.2f; training continues to the configured total of %s, counting what is "
        "done (it does not start the budget anew)",
        path,
        f"{progress.step:,}",
        progress.epoch + 1,
        format_duration(progress.elapsed_seconds),
        progress.best_bleu,
        " or ".join(totals),
    )
    saved_world = checkpoint.get("world_size", 1)
    if saved_world != ranks.world_size:
        logger.warning(
            "%s was written by %d training process(es), this run has %d: the rest "
            "of the epoch is shared out anew and a step now takes %d batch(es)",
            path,
            saved_world,
            ranks.world_size,
            ranks.world_size,
        )
    if ranks.is_main:
        _remove_strays(path.parent, progress)
    return progress


def _seed_process(seed: int, ranks: Ranks, step: int) -> None:
    """Give every process but the first its own dropout stream.

    The first keeps the stream of the seed (or of the checkpoint), so a run
    of one process is the same with and without this step; the others are
    seeded from the seed, their rank and the step, so they repeat too.
    """
    if ranks.rank > 0:
        torch.manual_seed(seed * 1_000_003 + ranks.rank * 10_007 + step)


def _remove_strays(out_dir: Path, progress: TrainingProgress) -> None:
    """Delete what an interrupted run may have left: temporary files of an
    atomic write, and kept checkpoints that ``last.pt`` no longer lists."""
    listed = {
        kept_checkpoint_name(int(entry["step"])) for entry in progress.kept_checkpoints
    }
    strays = [path for path in out_dir.glob(".*.tmp") if path.is_file()]
    strays += [
        path for path in out_dir.glob("best-step-*.pt") if path.name not in listed
    ]
    for stray in strays:
        stray.unlink(missing_ok=True)
    if strays:
        logger.info(
            "removed %d file(s) an interrupted run left: %s",
            len(strays),
            ", ".join(sorted(path.name for path in strays)),
        )


def kept_checkpoint_name(step: int) -> str:
    """File of a checkpoint kept among the ``keep_best`` best."""
    return f"best-step-{step}.pt"


def warmup_factor(step: int, warmup_steps: int) -> float:
    """What the learning rate is multiplied by at update ``step`` (from 1): it
    rises linearly, step / warmup_steps, then stays at 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / warmup_steps)


def update_plateau(progress: TrainingProgress, score: float, config: NMTConfig) -> bool:
    """Record a validation's ``score`` of ``config.validation_metric``.

    Updates the best score and the count of validations since it improved;
    every ``patience``-th validation in a row without improvement multiplies
    ``progress.lr`` by ``lr_decay`` (not below ``min_lr``). A validation
    within the warm-up only records the best score. Returns whether the rate
    was lowered.
    """
    best = progress.plateau_best
    if config.validation_metric == "bleu":
        improved = best is None or score > best
    else:
        improved = best is None or score < best
    if improved:
        progress.plateau_best = score
        progress.validations_without_improvement = 0
        return False
    if progress.step <= config.warmup_steps:
        return False
    progress.validations_without_improvement += 1
    if progress.validations_without_improvement % config.patience != 0:
        return False
    lowered = max(progress.lr * config.lr_decay, config.min_lr)
    if lowered >= progress.lr:
        return False
    progress.lr = lowered
    return True


def rank_checkpoints(
    kept: Sequence[dict[str, float]], step: int, bleu: float, keep_best: int
) -> tuple[list[dict[str, float]], list[int]]:
    """The ``keep_best`` best of ``kept`` and the new validation, by dev BLEU,
    best first (on a tie the earlier step ranks higher), and the steps that
    are no longer among them."""
    candidates = sorted(
        [*kept, {"step": step, "dev_bleu": bleu}],
        key=lambda entry: (-entry["dev_bleu"], entry["step"]),
    )
    dropped = [int(entry["step"]) for entry in candidates[keep_best:]]
    return candidates[:keep_best], dropped


def average_checkpoints(
    paths: Sequence[Path], device: torch.device = torch.device("cpu")
) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` weights saved in ``paths``.

    The checkpoints must be of one network (the same parameter names and
    shapes); a tensor that is not floating point is taken from the first.
    """
    remedy = "delete it, or train with average_checkpoints=false"
    sums: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for path in paths:
        weights = load_checkpoint(path, device, remedy, required=("model",))["model"]
        if not first:
            first = weights
            sums = {
                name: value.to(torch.float64, copy=True)
                for name, value in weights.items()
                if value.is_floating_point()
            }
            continue
        if weights.keys() != first.keys() or any(
            weights[name].shape != first[name].shape for name in first
        ):
            raise MtcError(f"{path}: not a checkpoint of the same network; {remedy}")
        for name in sums:
            sums[name] += weights[name].double()
    return {
        name: (sums[name] / len(paths)).to(value.dtype) if name in sums else value
        for name, value in first.items()
    }


class _TrainingLoop:
    """Steps, periodic progress lines, validation and checkpoints."""

    def __init__(
        self,
        trainee: _Trainee,
        corpus: _Corpus,
        config: NMTConfig,
        progress: TrainingProgress,
        out_dir: Path,
        ranks: Ranks,
        started: float,
    ):
        self.model = trainee.model
        self.optimizer = trainee.optimizer
        self.precision = trainee.precision
        self.device = trainee.device
        # what a step runs: the model, or the wrapper that averages gradients
        self.network: torch.nn.Module = self.model
        if ranks.distributed:
            self.network = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.corpus = corpus
        self.config = config
        self.progress = progress
        self.out_dir = out_dir
        self.ranks = ranks
        self.budget_seconds = config.max_minutes * 60
        self.started = started
        self.elapsed_before = progress.elapsed_seconds  # spent by earlier runs
        self.first_step = progress.step  # where this run started
        self.validation_seconds = 0.0  # how long the last validation took
        self.batches: list[list[int]] = []
        self.batches_epoch = -1
        self.learning_rate = progress.lr * warmup_factor(
            progress.step, config.warmup_steps
        )
        self.stop_reason = ""
        # True from the parameter update until the step counters follow it: an
        # interrupt in between would save parameters and progress that disagree
        self.updating = False
        self.last_log = time.monotonic()
        self.loss_since_validation = 0.0
        self.tokens_since_validation = 0
        self._reset_interval()

    def elapsed(self) -> float:
        """Seconds of the budget spent, earlier runs included."""
        return self.elapsed_before + time.monotonic() - self.started

    def run(self) -> None:
        """Train until the time budget, the step limit or early stopping, then
        validate once more.

        Interrupted (Ctrl-C), it saves ``last.pt`` first, so that a new run
        resumes from the last finished step.
        """
        try:
            self._train()
        except KeyboardInterrupt:
            self._save_interrupted()
            raise

    def _train(self) -> None:
        while not self._agreed_stop():
            batches = self._epoch_batches()
            if self.progress.batch_in_epoch >= len(batches):
                self.progress.epoch += 1
                self.progress.batch_in_epoch = 0
                continue
            self._train_step(batches[self.progress.batch_in_epoch])
            if time.monotonic() - self.last_log >= self.config.log_every_seconds:
                self._log_interval()
            if self.progress.step % self.config.validate_every == 0:
                self._validate_and_save()
        if self.progress.validated_step != self.progress.step:
            self._validate_and_save()
        logger.info(
            "training stopped at step %s (epoch %d) after %s (%s); "
            "best dev BLEU %.2f at step %s",
            f"{self.progress.step:,}",
            self.progress.epoch + 1,
            format_duration(self.elapsed()),
            self.stop_reason,
            self.progress.best_bleu,
            f"{self.progress.best_step:,}",
        )

    def _save_interrupted(self) -> None:
        if not self.ranks.is_main:
            return
        if self.updating:
            logger.warning(
                "interrupted during the parameter update of step %s, which is not "
                "saved; a new run resumes from the last validation, if any",
                f"{self.progress.step + 1:,}",
            )
            return
        self.progress.elapsed_seconds = self.elapsed()
        save_checkpoint(self.out_dir / LAST_CHECKPOINT, self._checkpoint_contents())
        logger.warning(
            "interrupted at step %s: saved %s; run the same command again to resume",
            f"{self.progress.step:,}",
            self.out_dir / LAST_CHECKPOINT,
        )

    def _agreed_stop(self) -> bool:
        """Whether to stop now, as process 0 decides; the others also take its
        learning rate, which its validations may have lowered."""
        stop = self.ranks.is_main and self._should_stop()
        if not self.ranks.distributed:
            return stop
        decision = torch.tensor(
            [float(stop), self.progress.lr], dtype=torch.float64, device=self.device
        )
        dist.broadcast(decision, src=0)
        self.progress.lr = float(decision[1])
        return bool(decision[0])

    def _should_stop(self) -> bool:
        patience = self.config.early_stopping_patience
        waited = self.progress.validations_without_improvement
        if patience and waited >= patience:
            self.stop_reason = (
                f"early stopping: dev {self.config.validation_metric} has not "
                f"improved for {waited} validations"
            )
            return True
        if self.config.max_steps and self.progress.step >= self.config.max_steps:
            self.stop_reason = f"max_steps {self.config.max_steps:,} reached"
            return True
        # keep time for the final validation
        if self.elapsed() + self.validation_seconds >= self.budget_seconds:
            self.stop_reason = (
                f"time budget of {self.config.max_minutes:g} minutes spent"
            )
            return True
        return False

    def _epoch_batches(self) -> list[list[int]]:
        """This process's batches of this epoch; the same for the same seed and
        epoch, so resume can skip to ``batch_in_epoch``."""
        epoch = self.progress.epoch
        if self.batches_epoch != epoch:
            rng = random.Random(self.config.seed * 100_003 + epoch)
            batches = make_batches(
                self.corpus.train_indices,
                self.corpus.train_src,
                self.corpus.train_tgt,
                self.config.batch_tokens,
                rng,
            )
            self.batches = shard_batches(
                batches, self.ranks.rank, self.ranks.world_size
            )
            self.batches_epoch = epoch
            if self.progress.batch_in_epoch == 0:
                source_padding, target_padding = padding_share(
                    batches, self.corpus.train_src, self.corpus.train_tgt
                )
                logger.info(
                    "epoch %d: %s batches of at most %s padded pieces%s; padding "
                    "%.1f%% of source and %.1f%% of target positions",
                    epoch + 1,
                    f"{len(batches):,}",
                    f"{self.config.batch_tokens:,}",
                    (
                        f", {len(self.batches):,} per process"
                        if self.ranks.distributed
                        else ""
                    ),
                    100 * source_padding,
                    100 * target_padding,
                )
        return self.batches

    def _train_step(self, indices: list[int]) -> float:
        """One update on the pairs ``indices``; returns their label-smoothed
        loss per target token."""
        self.network.train()
        batch = collate(indices, self.corpus.train_src, self.corpus.train_tgt).to(
            self.device
        )
        with self.precision.autocast():
            logits = self.network(batch.src, batch.src_lengths, batch.tgt_input)
            smoothed, nll = label_smoothed_losses(
                logits, batch.tgt_output, self.config.label_smoothing
            )
        # DistributedDataParallel averages the processes' gradients; dividing
        # each process's summed loss by the target tokens of all processes and
        # multiplying by their number makes that average the gradient of the
        # loss per target token of the whole step
        scale = self.ranks.world_size / self._step_target_tokens(batch.target_tokens)
        scaler = self.precision.scaler
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(smoothed * scale).backward()
        scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self._set_learning_rate(self.progress.step + 1)
        self.updating = True
        scaler.step(self.optimizer)
        scaler.update()
        self.progress.batch_in_epoch += 1
        self.progress.step += 1
        self.updating = False
        loss, summed_nll = float(smoothed.detach()), float(nll.detach())
        self.interval_loss += loss
        self.interval_nll += summed_nll
        self.interval_tokens += batch.target_tokens
        self.loss_since_validation += loss
        self.tokens_since_validation += batch.target_tokens
        return loss / batch.target_tokens

    def _step_target_tokens(self, tokens: int) -> int:
        """Target tokens of this step over all processes."""
        if not self.ranks.distributed:
            return tokens
        total = torch.tensor([tokens], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def _set_learning_rate(self, step: int) -> None:
        """The rate of update ``step``: the plateau-decayed rate, warmed up."""
        self.learning_rate = self.progress.lr * warmup_factor(
            step, self.config.warmup_steps
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate

    def _reset_interval(self) -> None:
        self.interval_loss = 0.0
        self.interval_nll = 0.0
        self.interval_tokens = 0
        self.interval_start = time.monotonic()

    def _log_interval(self) -> None:
        now = time.monotonic()
        tokens = max(self.interval_tokens, 1)
        rate = self.interval_tokens / max(now - self.interval_start, 1e-9)
        logger.info(
            "step %s | epoch %d | loss %.3f | ppl %.1f | %s tgt tokens/s%s | lr %.2e | "
            "elapsed %s | ETA %s",
            f"{self.progress.step:,}",
            self.progress.epoch + 1,
            self.interval_loss / tokens,
            math.exp(min(self.interval_nll / tokens, 50.0)),
            f"{rate:,.0f}",
            " per process" if self.ranks.distributed else "",
            self.learning_rate,
            format_duration(self.elapsed()),
            format_duration(self._remaining_seconds()),
        )
        self.last_log = now
        self._reset_interval()

    def _remaining_seconds(self) -> float:
        """Until the time budget ends, or sooner the step limit at this run's pace."""
        remaining = max(self.budget_seconds - self.elapsed(), 0.0)
        steps_done = self.progress.step - self.first_step
        if self.config.max_steps and steps_done > 0:
            pace = (time.monotonic() - self.started) / steps_done  # seconds per step
            steps_left = max(self.config.max_steps - self.progress.step, 0)
            remaining = min(remaining, steps_left * pace)
        return remaining

    def _validate_and_save(self) -> None:
        """Score the dev set and write checkpoints; on process 0 only."""
        if not self.ranks.is_main:
            return
        start = time.monotonic()
        perplexity = dev_perplexity(self.model, self.corpus, self.config, self.device)
        bleu, signature = dev_bleu(self.model, self.corpus, self.config, self.device)
        # changed on a copy, taken over once best.pt is written: an interrupt in
        # between saves the progress of before, which never claims a best.pt it lacks
        progress = copy.deepcopy(self.progress)
        progress.history.append(
            {
                "step": progress.step,
                "train_loss": self.loss_since_validation
                / max(self.tokens_since_validation, 1),
                "lr": self.learning_rate,
                "dev_perplexity": perplexity,
                "dev_bleu": bleu,
            }
        )
        improved = bleu > progress.best_bleu
        if improved:
            progress.best_bleu, progress.best_step = bleu, progress.step
        progress.best_perplexity = min(progress.best_perplexity, perplexity)
        score = bleu if self.config.validation_metric == "bleu" else perplexity
        lowered = update_plateau(progress, score, self.config)
        progress.kept_checkpoints, dropped = rank_checkpoints(
            progress.kept_checkpoints, progress.step, bleu, self.config.keep_best
        )
        kept = progress.step not in dropped
        progress.validated_step = progress.step
        progress.elapsed_seconds = self.elapsed()
        contents = self._checkpoint_contents(progress)
        # the checkpoints for translating need no optimizer state
        weights = {
            key: value
            for key, value in contents.items()
            if key not in ("optimizer", "scaler")
        }
        if improved:
            save_checkpoint(self.out_dir / BEST_CHECKPOINT, weights)
        if kept and self.config.keep_best > 1:
            save_checkpoint(self.out_dir / kept_checkpoint_name(progress.step), weights)
        self.progress = progress
        save_checkpoint(self.out_dir / LAST_CHECKPOINT, contents)
        if self.config.keep_best > 1:  # only then were they written
            for step in dropped:
                (self.out_dir / kept_checkpoint_name(step)).unlink(missing_ok=True)
        self.validation_seconds = time.monotonic() - start
        search = (
            "greedy"
            if self.config.dev_beam_size == 1
            else f"beam {self.config.dev_beam_size}"
        )
        logger.info(
            "step %s: dev perplexity %.2f, dev BLEU %.2f (%s, %d sentences, %s)%s%s; "
            "validated in %.1f s",
            f"{progress.step:,}",
            perplexity,
            bleu,
            search,
            min(self.config.dev_bleu_sentences, len(self.corpus.dev_src)),
            signature,
            " new best" if improved else "",
            (
                f", kept as {kept_checkpoint_name(progress.step)}"
                if kept and self.config.keep_best > 1
                else ""
            ),
            self.validation_seconds,
        )
        if lowered:
            logger.info(
                "dev %s has not improved for %d validation(s): learning rate now %.2e",
                self.config.validation_metric,
                progress.validations_without_improvement,
                progress.lr,
            )
        self.loss_since_validation, self.tokens_since_validation = 0.0, 0
        self._reset_interval()

    def _checkpoint_contents(
        self, progress: TrainingProgress | None = None
    ) -> dict[str, Any]:
        contents = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_config": asdict(self.model.config),
            "progress": asdict(progress or self.progress),
            "subwords": {name: getattr(self.config, name) for name in SUBWORD_FIELDS},
            "world_size": self.ranks.world_size,
            "rng_state": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            contents["cuda_rng_state"] = torch.cuda.get_rng_state()
        if self.precision.scaler.is_enabled():
            contents["scaler"] = self.precision.scaler.state_dict()
        return contents


def label_smoothed_losses(
    logits: torch.Tensor,  # batch x tgt_len x vocab
    targets: torch.Tensor,  # batch x tgt_len
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed label-smoothed loss and negative log-likelihood over the real
    (not padding) target tokens; the smoothing is described in the module
    docstring."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # batch x tgt_len x vocab
    real = targets != PAD_ID  # batch x tgt_len
    nll = -log_probs.gather(2, targets.unsqueeze(2)).squeeze(2)  # batch x tgt_len
    uniform = -log_probs.mean(dim=2)  # batch x tgt_len: cross-entropy to uniform
    smoothed = (1 - label_smoothing) * nll + label_smoothing * uniform
    return smoothed[real].sum(), nll[real].sum()


@torch.no_grad()
def dev_perplexity(
    model: Seq2Seq, corpus: _Corpus, config: NMTConfig, device: torch.device
) -> float:
    """Teacher-forced perplexity on the first ``dev_perplexity_sentences`` dev pairs."""
    model.eval()
    count = min(config.dev_perplexity_sentences, len(corpus.dev_src))
    targets = [tgt[: config.max_length] for tgt in corpus.dev_tgt[:count]]
    indices = [i for i in range(count) if corpus.dev_src[i] and targets[i]]
    total_nll, total_tokens = 0.0, 0
    for batch_indices in make_batches(
        indices, corpus.dev_src, targets, config.batch_tokens, random.Random(0)
    ):
        batch = collate(batch_indices, corpus.dev_src, targets).to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt_input)
        _, nll = label_smoothed_losses(logits, batch.tgt_output, 0.0)
        total_nll += float(nll)
        total_tokens += batch.target_tokens
    return math.exp(min(total_nll / max(total_tokens, 1), 50.0))


def dev_bleu(
    model: Seq2Seq, corpus: _Corpus, config: NMTConfig, device: torch.device
) -> tuple[float, str]:
    """BLEU on tokenised text of the first ``dev_bleu_sentences`` dev pairs,
    translated greedily (or with a beam of ``dev_beam_size``)."""
    count = min(config.dev_bleu_sentences, len(corpus.dev_src))
    outputs = translate_ids(
        model,
        corpus.dev_src[:count],
        config.search_config(config.dev_beam_size),
        device,
        config.batch_tokens,
        greedy=config.dev_beam_size == 1,
    )
    hypotheses = [corpus.tgt_subwords.decode(ids) for ids in outputs]
    # The text is tokenised on purpose (this BLEU only picks checkpoints), so
    # sacreBLEU's "forgot to detokenize?" warning is silenced.
    metric = sacrebleu.metrics.BLEU(tokenize="none", force=True)
    score = metric.corpus_score(hypotheses, [corpus.dev_references[:count]])
    return score.score, str(metric.get_signature())


def _finish(
    prepared_dir: Path,
    out_dir: Path,
    config: NMTConfig,
    trainee: _Trainee,
    progress: TrainingProgress,
    corpus: _Corpus,
) -> None:
    """Write the files that make ``out_dir`` a model directory; model.json last."""
    model_config = trainee.model.config
    checkpoint, checkpoint_bleu = _translation_checkpoint(
        out_dir, config, model_config, progress, corpus, trainee.device
    )
    settings = {
        "nmt": asdict(config),
        "model": asdict(model_config),
        "src_lang": corpus.src_lang,
        "tgt_lang": corpus.tgt_lang,
        "checkpoint": checkpoint,
    }
    write_text(out_dir / CONFIG_FILE, json.dumps(settings, indent=2) + "\n")
    if checkpoint != AVERAGED_CHECKPOINT:  # config.json no longer names it
        (out_dir / AVERAGED_CHECKPOINT).unlink(missing_ok=True)
    for lang in (corpus.src_lang, corpus.tgt_lang):
        name = f"preprocess.{lang}.json"
        with atomic_open(out_dir / name, "wb") as stream:
            with open(prepared_dir / name, "rb") as source:
                shutil.copyfileobj(source, stream)
    search = "greedy" if config.dev_beam_size == 1 else f"beam {config.dev_beam_size}"
    write_model_info(
        out_dir,
        "nmt",
        src_lang=corpus.src_lang,
        tgt_lang=corpus.tgt_lang,
        steps=progress.step,
        best_step=progress.best_step,
        best_dev_bleu=round(progress.best_bleu, 2),
        checkpoint=checkpoint,
        checkpoint_dev_bleu=round(checkpoint_bleu, 2),
        dev_bleu_note=f"{search}, tokenised, first "
        f"{min(config.dev_bleu_sentences, len(corpus.dev_src))} dev sentences",
        # what translation reads; last.pt (with the optimizer state) is for resuming
        translation_files=[MODEL_INFO, CONFIG_FILE, checkpoint]
        + [f"spm.{lang}.model" for lang in (corpus.src_lang, corpus.tgt_lang)]
        + [f"preprocess.{lang}.json" for lang in (corpus.src_lang, corpus.tgt_lang)],
    )
    logger.info("NMT model written to %s", out_dir)


def _translation_checkpoint(
    out_dir: Path,
    config: NMTConfig,
    model_config: ModelConfig,
    progress: TrainingProgress,
    corpus: _Corpus,
    device: torch.device,
) -> tuple[str, float]:
    """The checkpoint to translate with and its dev BLEU: ``best.pt``, or with
    ``average_checkpoints`` the average of the kept ones when it scores at
    least as high on the dev set (then written as ``averaged.pt``)."""
    if not config.average_checkpoints:
        return BEST_CHECKPOINT, progress.best_bleu
    kept = [
        entry
        for entry in progress.kept_checkpoints
        if (out_dir / kept_checkpoint_name(int(entry["step"]))).is_file()
    ]
    if len(kept) < 2:
        logger.info(
            "checkpoint averaging needs 2 kept checkpoints and there are %d: "
            "translating with %s (dev BLEU %.2f)",
            len(kept),
            BEST_CHECKPOINT,
            progress.best_bleu,
        )
        return BEST_CHECKPOINT, progress.best_bleu
    steps = [int(entry["step"]) for entry in kept]
    weights = average_checkpoints(
        [out_dir / kept_checkpoint_name(step) for step in steps], device
    )
    model = Seq2Seq(model_config).to(device)
    model.load_state_dict(weights)
    bleu, _ = dev_bleu(model, corpus, config, device)
    chosen = AVERAGED_CHECKPOINT if bleu >= progress.best_bleu else BEST_CHECKPOINT
    if chosen == AVERAGED_CHECKPOINT:
        save_checkpoint(
            out_dir / AVERAGED_CHECKPOINT,
            {
                "model": weights,
                "model_config": asdict(model_config),
                "progress": asdict(progress),
                "averaged_steps": steps,
            },
        )
    logger.info(
        "checkpoint averaging: the mean of the %d best checkpoints (steps %s) has "
        "dev BLEU %.2f, the best single one (step %s) %.2f: translating with %s",
        len(steps),
        ", ".join(f"{step:,}" for step in steps),
        bleu,
        f"{progress.best_step:,}",
        progress.best_bleu,
        chosen,
    )
    return chosen, max(bleu, progress.best_bleu)
