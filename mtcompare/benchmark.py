"""The main job: prepare -> train SMT -> train NMT -> translate -> evaluate -> report.

Every stage reads its inputs from the run directory and writes its outputs
atomically, and a stage whose outputs exist is skipped, so an interrupted
benchmark resumes where it stopped (the NMT stage itself resumes from its
last checkpoint). Stage timings are kept in ``stages.json`` so that a
resumed run still reports how long each stage took.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mtcompare import __version__
from mtcompare.config import build_config
from mtcompare.data.prepare import PrepareConfig, is_prepared, load_manifest, prepare
from mtcompare.errors import MtcError
from mtcompare.eval.metrics import score_corpus
from mtcompare.eval.report import pick_examples, summary_table, write_report
from mtcompare.fileio import read_lines, write_lines, write_text
from mtcompare.translator import MODEL_INFO, load_translator, read_model_info

logger = logging.getLogger(__name__)

STAGES_FILE = "stages.json"
OPTIONS_FILE = "options.json"


@dataclass
class BenchmarkOptions:
    corpus: str = "bible-es-en"
    train_size: int | None = None
    nmt_minutes: float = 40.0
    threads: int = 2
    smt_overrides: tuple[str, ...] = field(default_factory=tuple)
    nmt_overrides: tuple[str, ...] = field(default_factory=tuple)


def run_benchmark(run_dir: Path, options: BenchmarkOptions) -> str:
    """Run every stage that has not run yet; return the summary table."""
    _validate_overrides(options)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_options(run_dir, options)
    stages = _Stages(run_dir / STAGES_FILE)
    prepared = run_dir / "prepared"

    if is_prepared(Path(options.corpus)):
        prepared = Path(options.corpus)
        logger.info("using the corpus prepared in %s", prepared)
    elif is_prepared(prepared):
        logger.info("reusing the prepared corpus in %s", prepared)
    else:
        config = PrepareConfig(corpus=options.corpus, train_size=options.train_size)
        stages.timed("prepare", lambda: prepare(config, prepared))
    manifest = load_manifest(prepared)

    _train_stage(stages, "smt", prepared, run_dir / "smt", options)
    _train_stage(stages, "nmt", prepared, run_dir / "nmt", options)

    sources = read_lines(prepared / f"test.{manifest['src_lang']}")
    references = read_lines(prepared / f"test.{manifest['tgt_lang']}")
    hypotheses = {name: _translate_stage(stages, name, run_dir, sources, manifest, options)
                  for name in ("smt", "nmt")}

    results = _results(run_dir, prepared, manifest, stages, sources, references,
                       hypotheses)
    write_report(run_dir, results)
    logger.info("report written to %s", run_dir / "report.md")
    return summary_table(results)


def _validate_overrides(options: BenchmarkOptions) -> None:
    """Check every config override before anything is written or trained."""
    from mtcompare.nmt.train import NMTConfig
    from mtcompare.smt.model import SMTConfig

    build_config(SMTConfig, overrides=options.smt_overrides)
    build_config(NMTConfig, overrides=options.nmt_overrides,
                 max_minutes=options.nmt_minutes, threads=options.threads)


def _check_options(run_dir: Path, options: BenchmarkOptions) -> None:
    """A run directory resumes only the run it was started with."""
    path = run_dir / OPTIONS_FILE
    wanted = json.loads(json.dumps(asdict(options)))  # tuples as lists, as stored
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in wanted if stored.get(key) != wanted[key])
        if changed:
            raise MtcError(
                f"{run_dir} holds a run with other options ({', '.join(changed)} "
                "differ); re-run it with its own options, or use a new --out"
            )
        return
    write_text(path, json.dumps(wanted, indent=2) + "\n")


def _train_stage(stages: "_Stages", kind: str, prepared: Path, model_dir: Path,
                 options: BenchmarkOptions) -> None:
    if (model_dir / MODEL_INFO).is_file():
        logger.info("reusing the %s model in %s", kind.upper(), model_dir)
        return
    if kind == "smt":
        from mtcompare.smt.model import SMTConfig, train_smt

        config = build_config(SMTConfig, overrides=options.smt_overrides)
        stages.timed("train_smt", lambda: train_smt(prepared, model_dir, config,
                                                    processes=options.threads))
    else:
        from mtcompare.nmt.train import NMTConfig, train_nmt

        config = build_config(NMTConfig, overrides=options.nmt_overrides,
                              max_minutes=options.nmt_minutes, threads=options.threads)
        # A resumed NMT training adds its time to the earlier attempts'.
        stages.timed("train_nmt", lambda: train_nmt(prepared, model_dir, config),
                     accumulate=True)


def _translate_stage(stages: "_Stages", name: str, run_dir: Path, sources: list[str],
                     manifest: dict, options: BenchmarkOptions) -> list[str]:
    output = run_dir / f"test.{name}.{manifest['tgt_lang']}"
    if output.is_file() and f"translate_{name}" in stages.record:
        logger.info("reusing %s", output)
        return read_lines(output)
    translator = load_translator(run_dir / name, threads=options.threads)
    translations = stages.timed(f"translate_{name}", lambda: translator.translate(sources))
    write_lines(output, translations)
    return translations


def _results(run_dir: Path, prepared: Path, manifest: dict, stages: "_Stages",
             sources: list[str],
             references: list[str], hypotheses: dict[str, list[str]]) -> dict:
    systems = {}
    for name, lines in {**hypotheses, "copy-source": sources}.items():
        scores = score_corpus(lines, references)
        system = {
            "BLEU": scores["BLEU"].score,
            "chrF": scores["chrF"].score,
            "signatures": {metric: score.signature for metric, score in scores.items()},
        }
        if name in hypotheses:
            translate_seconds = stages.record[f"translate_{name}"]
            system.update(
                train_seconds=stages.record.get(f"train_{name}"),
                translate_seconds=translate_seconds,
                sentences_per_second=round(len(sources) / max(translate_seconds, 1e-9), 2),
                model_bytes=_model_size(run_dir / name),
                **_training_details(run_dir / name),
            )
        systems[name] = system

    refs = _read_optional(prepared / "test.ref", len(sources))
    examples = [
        {"index": index, "ref": refs[index], "source": sources[index],
         "reference": references[index],
         **{name: lines[index] for name, lines in hypotheses.items()}}
        for index in pick_examples(len(sources))
    ]
    return {
        "corpus": manifest["corpus"],
        "src_lang": manifest["src_lang"],
        "tgt_lang": manifest["tgt_lang"],
        "case": manifest["case"],
        "counts": manifest["counts"],
        "counts_before_cleaning": manifest.get("counts_before_cleaning", manifest["counts"]),
        "train_size": manifest.get("options", {}).get("train_size"),
        "dropped": manifest["dropped"],
        "systems": systems,
        "stages_seconds": stages.record,
        "examples": examples,
        "command": "mtcompare " + " ".join(shlex.quote(arg) for arg in sys.argv[1:]),
        "environment": _environment(),
    }


def _training_details(model_dir: Path) -> dict:
    """Per-stage training seconds and, for a tuned SMT model, its tuning record."""
    details: dict = {}
    seconds = read_model_info(model_dir).get("seconds")
    if isinstance(seconds, dict):
        details["stage_seconds"] = seconds
    weights_path = model_dir / "weights.json"
    if weights_path.is_file():
        record = json.loads(weights_path.read_text(encoding="utf-8"))
        details["tuning"] = {key: record.get(key) for key in (
            "dev_bleu_untuned", "dev_bleu", "dev_sentences", "best_iteration",
            "stop_reason")}
        details["tuning"]["iterations"] = len(record.get("history", []))
    return details


def _environment() -> dict:
    import torch

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mtcompare": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu cores": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def _read_optional(path: Path, count: int) -> list[str | None]:
    if not path.is_file():
        return [None] * count
    return [line or None for line in read_lines(path)]


def _model_size(model_dir: Path) -> int:
    """Bytes of the files translation reads (``model.json``'s list), else of all files."""
    names = read_model_info(model_dir).get("translation_files")
    files = ([model_dir / name for name in names] if names
             else [item for item in model_dir.rglob("*") if item.is_file()])
    return sum(path.stat().st_size for path in files)


class _Stages:
    """Wall-clock seconds of each finished stage, kept on disk across runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record: dict[str, float] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )

    def timed(self, name: str, stage, accumulate: bool = False):
        started = time.monotonic()
        try:
            result = stage()
        except KeyboardInterrupt:
            if accumulate:
                self._store(name, time.monotonic() - started, accumulate)
            raise
        self._store(name, time.monotonic() - started, accumulate)
        return result

    def _store(self, name: str, seconds: float, accumulate: bool) -> None:
        earlier = self.record.get(name, 0.0) if accumulate else 0.0
        self.record[name] = round(earlier + seconds, 2)
        write_text(self.path, json.dumps(self.record, indent=2) + "\n")
