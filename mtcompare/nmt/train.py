"""Training the attentional LSTM translation model within a time budget.

The model (:mod:`mtcompare.nmt.model`) is trained by teacher forcing: given
the source and the reference target so far, it predicts the next target
piece, and the loss is the cross-entropy of the reference pieces, smoothed
towards the uniform distribution (label smoothing, Szegedy et al. 2016) so
the model does not become over-confident. Parameters are updated with Adam
(Kingma & Ba 2015) after clipping the gradient norm, which keeps recurrent
networks from the occasional exploding update (Pascanu et al. 2013). The
output layer's bias starts at the log unigram frequencies of the target
pieces, so training does not spend its first steps learning them.

Every ``validate_every`` steps the model is scored on the development set:
perplexity by teacher forcing, and BLEU of greedy translations of the first
``dev_bleu_sentences`` sentences, on tokenised text, with the output capped
at a multiple of the source length so validation stays cheap. When dev
perplexity stops improving the learning rate is multiplied by ``lr_decay``.
Two checkpoints are kept, written atomically: ``best.pt`` (best dev BLEU so
far) and ``last.pt`` (the latest, with the optimizer state); an interrupted
run (Ctrl-C) writes ``last.pt`` too before it stops. A run stops when
``max_minutes`` of wall time (validation included) are spent; started again
on the same output directory it resumes from ``last.pt`` towards the same
budget. The model directory is complete when ``model.json`` exists, which is
written last. Resuming a finished model keeps its ``model.json``: the
architecture is checked before anything is written, and ``best.pt`` is only
ever replaced atomically by a better checkpoint of the same network, so the
directory stays a usable model however the new run ends.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import json
import logging
import math
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sacrebleu
import torch

from mtcompare.data.prepare import prepared_languages
from mtcompare.data.subword import (
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    SubwordModel,
    train_sentencepiece,
)
from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open, read_lines, write_text
from mtcompare.nmt.batching import collate, filter_by_length, make_batches
from mtcompare.nmt.model import ModelConfig, Seq2Seq
from mtcompare.nmt.search import SearchConfig, translate_ids
from mtcompare.progress import format_duration
from mtcompare.translator import MODEL_INFO, write_model_info

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
CONFIG_FILE = "config.json"
SUBWORD_TYPES = ("unigram", "bpe")
RESUME_REMEDY = "cannot resume from it, train into a new output directory"
RETRAIN_REMEDY = "train the NMT model again with 'mtcompare train nmt'"


@dataclass
class NMTConfig:
    """Everything that decides an NMT model and how it is trained and used."""

    vocab_size: int = 8000  # SentencePiece pieces per language (soft limit)
    subword_type: str = "unigram"
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
    lr_decay: float = 0.5  # factor applied when dev perplexity does not improve
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    batch_tokens: int = 2500  # padded pieces per batch
    max_length: int = 100  # longest training pair in pieces; longer sources are cut
    max_minutes: float = 30.0  # wall-time budget of the whole run, validation included
    max_steps: int = 0  # 0: no step limit, only the time budget
    validate_every: int = 250  # steps
    dev_bleu_sentences: int = 200
    dev_perplexity_sentences: int = 1000
    log_every_seconds: float = 30.0
    seed: int = 1
    threads: int = 1
    beam_size: int = 5
    length_penalty: float = 1.0
    length_normalisation: str = "length"  # lp(n) = n^alpha, or "gnmt" ((5+n)/6)^alpha
    max_length_ratio: float = 1.5
    max_length_extra: int = 10

    def validate(self) -> None:
        """Raise :class:`MtcError` on the first invalid value."""
        if self.subword_type not in SUBWORD_TYPES:
            raise MtcError(
                f"unknown subword_type {self.subword_type!r}; "
                f"valid: {', '.join(SUBWORD_TYPES)}"
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
            "threads",
            "beam_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise MtcError(
                    f"NMT option {name} must be at least 1, got {getattr(self, name)}"
                )
        if self.lr <= 0 or self.max_minutes <= 0 or self.clip_norm <= 0:
            raise MtcError("NMT options lr, max_minutes and clip_norm must be positive")
        if not 0 < self.lr_decay <= 1:
            raise MtcError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
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
    lr: float = 0.0
    best_bleu: float = -1.0
    best_step: int = 0
    best_perplexity: float = math.inf
    validated_step: int = -1
    history: list[dict[str, float]] = field(default_factory=list)


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


def train_nmt(prepared_dir: str | Path, out_dir: str | Path, config: NMTConfig) -> None:
    """Train an NMT model on a prepared directory into ``out_dir``.

    Resumes from ``out_dir/last.pt`` when it exists. Writes ``best.pt``,
    ``last.pt``, the SentencePiece models, ``config.json``, the preprocessors
    and, last, ``model.json``.
    """
    started = time.monotonic()
    config.validate()
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    src_lang, tgt_lang = _languages(prepared_dir)
    _check_out_dir(out_dir)
    last_path = out_dir / LAST_CHECKPOINT
    resuming = last_path.is_file()
    checkpoint = (
        _resume_checkpoint(last_path, config, src_lang, tgt_lang, device)
        if resuming
        else None
    )
    logger.info("NMT config: %s", json.dumps(asdict(config)))
    logger.info("training on %s with %d thread(s)", device, config.threads)

    corpus = _load_corpus(prepared_dir, out_dir, config, src_lang, tgt_lang, resuming)
    model_config = config.model_config(
        _vocab_size(out_dir, src_lang), _vocab_size(out_dir, tgt_lang)
    )
    unigram = _target_unigram(corpus, model_config.tgt_vocab_size)
    torch.manual_seed(config.seed)
    model = Seq2Seq(model_config)
    with torch.no_grad():
        # start from the unigram distribution instead of the uniform one, which
        # saves the first steps of learning piece frequencies
        model.output.bias.copy_(unigram.log())
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    progress = TrainingProgress(lr=config.lr)
    if checkpoint is not None:
        progress = _resume(checkpoint, last_path, model, optimizer)
    else:
        logger.info(
            "model: %s parameters, %s",
            f"{sum(p.numel() for p in model.parameters()):,}",
            json.dumps(asdict(model_config)),
        )

    loop = _TrainingLoop(
        model, optimizer, corpus, config, progress, out_dir, device, started
    )
    loop.run()
    _finish(prepared_dir, out_dir, config, model_config, loop.progress, corpus)


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
    out_dir = path.parent
    model_config = config.model_config(
        _vocab_size(out_dir, src_lang), _vocab_size(out_dir, tgt_lang)
    )
    # dropout may change between runs; the sizes of the parameters may not
    saved = {**checkpoint["model_config"], "dropout": model_config.dropout}
    configured = asdict(model_config)
    if saved != configured:
        differences = ", ".join(
            f"{name} {saved.get(name)} there, {value} configured"
            for name, value in configured.items()
            if saved.get(name) != value
        )
        raise MtcError(
            f"{path}: the checkpoint's model differs from the configured one "
            f"({differences or 'unknown entries'}); train into a new output directory"
        )
    return checkpoint


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
    src_lang: str,
    tgt_lang: str,
    resuming: bool,
) -> _Corpus:
    """Read token lines, learn (or reload) SentencePiece, turn lines into piece ids."""
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
    subwords = {}
    for lang, lines in ((src_lang, train_src_lines), (tgt_lang, train_tgt_lines)):
        model_path = out_dir / f"spm.{lang}.model"
        if resuming:  # the checkpoint's pieces; _resume_checkpoint read both models
            subwords[lang] = SubwordModel.load(model_path)
        else:
            subwords[lang] = train_sentencepiece(
                lines,
                out_dir / f"spm.{lang}",
                config.vocab_size,
                config.subword_type,
                threads=config.threads,
            )
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


def _resume(
    checkpoint: dict[str, Any],
    path: Path,
    model: Seq2Seq,
    optimizer: torch.optim.Optimizer,
) -> TrainingProgress:
    """Put the state saved in ``checkpoint`` (read from ``path``) back in place."""
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        progress = TrainingProgress(**checkpoint["progress"])
        torch.set_rng_state(checkpoint["rng_state"].cpu())
    except (RuntimeError, TypeError, ValueError, KeyError) as error:
        raise MtcError(
            f"{path}: its training state does not fit the model"
            f"{short_reason(error)}; {RESUME_REMEDY}"
        ) from None
    for group in optimizer.param_groups:
        group["lr"] = progress.lr
    logger.info(
        "resuming from %s: step %s, epoch %d, %s of the budget used, "
        "best dev BLEU %.2f",
        path,
        f"{progress.step:,}",
        progress.epoch + 1,
        format_duration(progress.elapsed_seconds),
        progress.best_bleu,
    )
    return progress


class _TrainingLoop:
    """Steps, periodic progress lines, validation and checkpoints."""

    def __init__(
        self,
        model: Seq2Seq,
        optimizer: torch.optim.Optimizer,
        corpus: _Corpus,
        config: NMTConfig,
        progress: TrainingProgress,
        out_dir: Path,
        device: torch.device,
        started: float,
    ):
        self.model = model
        self.optimizer = optimizer
        self.corpus = corpus
        self.config = config
        self.progress = progress
        self.out_dir = out_dir
        self.device = device
        self.budget_seconds = config.max_minutes * 60
        self.started = started
        self.elapsed_before = progress.elapsed_seconds  # spent by earlier runs
        self.validation_seconds = 0.0  # how long the last validation took
        self.batches: list[list[int]] = []
        self.batches_epoch = -1
        # True from the parameter update until the step counters follow it: an
        # interrupt in between would save parameters and progress that disagree
        self.updating = False
        self.last_log = time.monotonic()
        self._reset_interval()

    def elapsed(self) -> float:
        """Seconds of the budget spent, earlier runs included."""
        return self.elapsed_before + time.monotonic() - self.started

    def run(self) -> None:
        """Train until the time budget or the step limit, then validate once more.

        Interrupted (Ctrl-C), it saves ``last.pt`` first, so that a new run
        resumes from the last finished step.
        """
        try:
            self._train()
        except KeyboardInterrupt:
            self._save_interrupted()
            raise

    def _train(self) -> None:
        while not self._out_of_budget():
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
            "training stopped at step %s (epoch %d) after %s; "
            "best dev BLEU %.2f at step %s",
            f"{self.progress.step:,}",
            self.progress.epoch + 1,
            format_duration(self.elapsed()),
            self.progress.best_bleu,
            f"{self.progress.best_step:,}",
        )

    def _save_interrupted(self) -> None:
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

    def _out_of_budget(self) -> bool:
        if self.config.max_steps and self.progress.step >= self.config.max_steps:
            return True
        # keep time for the final validation
        return self.elapsed() + self.validation_seconds >= self.budget_seconds

    def _epoch_batches(self) -> list[list[int]]:
        """This epoch's batches; the same for the same seed and epoch, so resume can
        skip to ``batch_in_epoch``."""
        epoch = self.progress.epoch
        if self.batches_epoch != epoch:
            rng = random.Random(self.config.seed * 100_003 + epoch)
            self.batches = make_batches(
                self.corpus.train_indices,
                self.corpus.train_src,
                self.corpus.train_tgt,
                self.config.batch_tokens,
                rng,
            )
            self.batches_epoch = epoch
            if self.progress.batch_in_epoch == 0:
                logger.info("epoch %d: %s batches", epoch + 1, f"{len(self.batches):,}")
        return self.batches

    def _train_step(self, indices: list[int]) -> None:
        self.model.train()
        batch = collate(indices, self.corpus.train_src, self.corpus.train_tgt).to(
            self.device
        )
        logits = self.model(batch.src, batch.src_lengths, batch.tgt_input)
        smoothed, nll = _losses(logits, batch.tgt_output, self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        (smoothed / batch.target_tokens).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.updating = True
        self.optimizer.step()
        self.progress.batch_in_epoch += 1
        self.progress.step += 1
        self.updating = False
        self.interval_loss += float(smoothed.detach())
        self.interval_nll += float(nll.detach())
        self.interval_tokens += batch.target_tokens

    def _reset_interval(self) -> None:
        self.interval_loss = 0.0
        self.interval_nll = 0.0
        self.interval_tokens = 0
        self.interval_start = time.monotonic()

    def _log_interval(self) -> None:
        now = time.monotonic()
        tokens = max(self.interval_tokens, 1)
        rate = self.interval_tokens / max(now - self.interval_start, 1e-9)
        remaining = max(self.budget_seconds - self.elapsed(), 0.0)
        logger.info(
            "step %s | epoch %d | loss %.3f | ppl %.1f | %s tgt tokens/s | lr %.2e | "
            "elapsed %s | ETA %s",
            f"{self.progress.step:,}",
            self.progress.epoch + 1,
            self.interval_loss / tokens,
            math.exp(min(self.interval_nll / tokens, 50.0)),
            f"{rate:,.0f}",
            self.progress.lr,
            format_duration(self.elapsed()),
            format_duration(remaining),
        )
        self.last_log = now
        self._reset_interval()

    def _validate_and_save(self) -> None:
        start = time.monotonic()
        perplexity = dev_perplexity(self.model, self.corpus, self.config, self.device)
        bleu, signature = dev_bleu(self.model, self.corpus, self.config, self.device)
        # changed on a copy, taken over once best.pt is written: an interrupt in
        # between saves the progress of before, which never claims a best.pt it lacks
        progress = copy.deepcopy(self.progress)
        progress.history.append(
            {"step": progress.step, "dev_perplexity": perplexity, "dev_bleu": bleu}
        )
        improved = bleu > progress.best_bleu
        if improved:
            progress.best_bleu, progress.best_step = bleu, progress.step
        if perplexity >= progress.best_perplexity and self.config.lr_decay < 1:
            progress.lr *= self.config.lr_decay
            for group in self.optimizer.param_groups:
                group["lr"] = progress.lr
            logger.info(
                "dev perplexity did not improve: learning rate now %.2e", progress.lr
            )
        progress.best_perplexity = min(progress.best_perplexity, perplexity)
        progress.validated_step = progress.step
        progress.elapsed_seconds = self.elapsed()
        contents = self._checkpoint_contents(progress)
        if improved:  # the best model is for translating: no optimizer state
            best = {key: value for key, value in contents.items() if key != "optimizer"}
            save_checkpoint(self.out_dir / BEST_CHECKPOINT, best)
        self.progress = progress
        save_checkpoint(self.out_dir / LAST_CHECKPOINT, contents)
        self.validation_seconds = time.monotonic() - start
        logger.info(
            "step %s: dev perplexity %.2f, dev BLEU %.2f (greedy, %d sentences, %s)%s; "
            "validated in %.1f s",
            f"{progress.step:,}",
            perplexity,
            bleu,
            min(self.config.dev_bleu_sentences, len(self.corpus.dev_src)),
            signature,
            " new best" if improved else "",
            self.validation_seconds,
        )
        self._reset_interval()

    def _checkpoint_contents(
        self, progress: TrainingProgress | None = None
    ) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_config": asdict(self.model.config),
            "progress": asdict(progress or self.progress),
            "rng_state": torch.get_rng_state(),
        }


def _losses(
    logits: torch.Tensor,  # batch x tgt_len x vocab
    targets: torch.Tensor,  # batch x tgt_len
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed label-smoothed loss and negative log-likelihood over real tokens."""
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
        _, nll = _losses(logits, batch.tgt_output, 0.0)
        total_nll += float(nll)
        total_tokens += batch.target_tokens
    return math.exp(min(total_nll / max(total_tokens, 1), 50.0))


def dev_bleu(
    model: Seq2Seq, corpus: _Corpus, config: NMTConfig, device: torch.device
) -> tuple[float, str]:
    """Greedy BLEU on tokenised text for the first ``dev_bleu_sentences`` dev pairs."""
    count = min(config.dev_bleu_sentences, len(corpus.dev_src))
    outputs = translate_ids(
        model,
        corpus.dev_src[:count],
        config.search_config(),
        device,
        config.batch_tokens,
        greedy=True,
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
    model_config: ModelConfig,
    progress: TrainingProgress,
    corpus: _Corpus,
) -> None:
    """Write the files that make ``out_dir`` a model directory; model.json last."""
    settings = {
        "nmt": asdict(config),
        "model": asdict(model_config),
        "src_lang": corpus.src_lang,
        "tgt_lang": corpus.tgt_lang,
        "checkpoint": BEST_CHECKPOINT,
    }
    write_text(out_dir / CONFIG_FILE, json.dumps(settings, indent=2) + "\n")
    for lang in (corpus.src_lang, corpus.tgt_lang):
        name = f"preprocess.{lang}.json"
        with atomic_open(out_dir / name, "wb") as stream:
            with open(prepared_dir / name, "rb") as source:
                shutil.copyfileobj(source, stream)
    write_model_info(
        out_dir,
        "nmt",
        src_lang=corpus.src_lang,
        tgt_lang=corpus.tgt_lang,
        steps=progress.step,
        best_step=progress.best_step,
        best_dev_bleu=round(progress.best_bleu, 2),
        dev_bleu_note="greedy, tokenised, first "
        f"{min(config.dev_bleu_sentences, len(corpus.dev_src))} dev sentences",
        # what translation reads; last.pt (with the optimizer state) is for resuming
        translation_files=[MODEL_INFO, CONFIG_FILE, BEST_CHECKPOINT]
        + [f"spm.{lang}.model" for lang in (corpus.src_lang, corpus.tgt_lang)]
        + [f"preprocess.{lang}.json" for lang in (corpus.src_lang, corpus.tgt_lang)],
    )
    logger.info("NMT model written to %s", out_dir)
