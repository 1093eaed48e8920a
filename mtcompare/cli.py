"""The ``mtcompare`` command line: parse options, call the library.

Each command is a thin layer over one library function. Errors a user
caused (:class:`~mtcompare.errors.MtcError`) print as one line and exit with
status 2; Ctrl-C exits with 130 after the stage in progress has left only
whole files behind.
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads spin-wait by default; on a busy 2-core machine two
# threads then run several times slower than one. This must be set before
# torch is imported anywhere.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import click  # noqa: E402

from mtcompare import __version__  # noqa: E402
from mtcompare.errors import MtcError  # noqa: E402

logger = logging.getLogger("mtcompare")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: run the CLI, turning user errors into one line."""
    try:
        cli.main(args=argv, prog_name="mtcompare", standalone_mode=False)
    except MtcError as error:
        _fail(str(error))
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "mtcompare"
        _fail(f"{error.format_message()} (see '{command} --help')")
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except OSError as error:
        # A path the user gave cannot be written or read (a file where a
        # directory should be, no permission, a full disk).
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}; check the path and try again")
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted; files already finished are kept whole (training and "
                   "the benchmark resume when re-run)", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(__version__, prog_name="mtcompare")
@click.option("-v", "--verbose", count=True, help="Debug log output as well.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Phrase-based SMT and LSTM NMT, side by side on one corpus."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S", stream=sys.stderr,
    )


# ---- prepare -------------------------------------------------------------

@cli.command()
@click.argument("corpus", required=False)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write the prepared corpus to.")
@click.option("--train-size", type=click.IntRange(min=1),
              help="Keep only the first N cleaned training pairs.")
@click.option("--src", type=click.Path(dir_okay=False), help="Line-aligned source file.")
@click.option("--tgt", type=click.Path(dir_okay=False), help="Line-aligned target file.")
@click.option("--tsv", type=click.Path(dir_okay=False), help="TSV file: source<TAB>target.")
@click.option("--tmx", type=click.Path(dir_okay=False), help="TMX translation memory.")
@click.option("--src-lang", default="es", show_default=True, help="Source language code.")
@click.option("--tgt-lang", default="en", show_default=True, help="Target language code.")
@click.option("--dev-src", type=click.Path(dir_okay=False))
@click.option("--dev-tgt", type=click.Path(dir_okay=False))
@click.option("--test-src", type=click.Path(dir_okay=False))
@click.option("--test-tgt", type=click.Path(dir_okay=False))
@click.option("--dev-size", default=1000, show_default=True,
              help="Dev pairs of a seeded split (user corpora without dev files).")
@click.option("--test-size", default=1000, show_default=True,
              help="Test pairs of a seeded split.")
@click.option("--seed", default=1, show_default=True, help="Seed of the split.")
@click.option("--max-length", default=80, show_default=True,
              help="Drop training pairs with more tokens on a side.")
@click.option("--max-ratio", default=9.0, show_default=True,
              help="Drop training pairs whose length ratio is larger.")
@click.option("--case", type=click.Choice(["truecase", "lowercase", "none"]),
              default="truecase", show_default=True)
def prepare(corpus: str | None, out_dir: str, **options: object) -> None:
    """Read, split, tokenise and clean a corpus into OUT.

    CORPUS is 'bible-es-en' (the default, from the installed SWORD modules);
    give --src/--tgt, --tsv or --tmx for your own files instead.
    """
    from mtcompare.data.prepare import BIBLE, PrepareConfig, prepare as run_prepare

    user_files = any(options[key] for key in ("src", "tgt", "tsv", "tmx"))
    if corpus and user_files:
        raise MtcError(f"give either a corpus name ({corpus!r}) or files, not both")
    config = PrepareConfig(corpus="files" if user_files else (corpus or BIBLE), **options)
    manifest = run_prepare(config, Path(out_dir))
    counts = manifest["counts"]
    click.echo(f"prepared {out_dir}: {counts['train']:,} train, {counts['dev']:,} dev, "
               f"{counts['test']:,} test pairs")


# ---- train ---------------------------------------------------------------

@cli.group()
def train() -> None:
    """Train a system on a prepared corpus."""


def _config_options(function: Callable) -> Callable:
    function = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                            help="YAML or TOML config file.")(function)
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override one config setting (repeatable).")(function)


@train.command("smt")
@click.argument("prepared", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--no-tune", is_flag=True,
              help="Skip MERT on the dev set; translate with the configured weights.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1),
              help="Decoder processes while tuning.")
@_config_options
def train_smt_command(prepared: str, out_dir: str, no_tune: bool, threads: int,
                      config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Train the phrase-based system on PREPARED, then tune it on PREPARED's dev set."""
    from mtcompare.config import build_config
    from mtcompare.smt.model import SMTConfig, train_smt

    config = build_config(SMTConfig, config_path, overrides,
                          tune=False if no_tune else None)
    train_smt(Path(prepared), Path(out_dir), config, processes=threads)
    click.echo(f"SMT model written to {out_dir}")


@cli.command()
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("prepared", type=click.Path(file_okay=False))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1),
              help="Decoder processes.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a tuning setting (tune_nbest, tune_iterations, tune_seed, "
                   "tune_sentences).")
def tune(model: str, prepared: str, threads: int, overrides: tuple[str, ...]) -> None:
    """Re-tune the weights of the SMT MODEL by MERT on PREPARED's dev set."""
    import dataclasses

    from mtcompare.config import build_config
    from mtcompare.smt.model import CONFIG_FILE, TUNING_SETTINGS, SMTConfig, retune_smt

    from mtcompare.smt.model import _read_config
    from mtcompare.translator import MODEL_INFO, read_model_info

    settable = [name for name in TUNING_SETTINGS if name != "tune"]
    given = [item.partition("=")[0].strip() for item in overrides]
    unknown = [key for key in given if key not in settable]
    if unknown:
        raise MtcError(f"--set {unknown[0]}: only tuning settings change here; "
                       f"valid: {', '.join(settable)}")
    if (Path(model) / MODEL_INFO).is_file():
        kind = read_model_info(model).get("kind")
        if kind != "smt":
            raise MtcError(f"{model}: a {kind} model; only SMT models tune")
    config_path = Path(model) / CONFIG_FILE
    if not config_path.is_file():
        raise MtcError(f"{model}: no {CONFIG_FILE}; train it with 'mtcompare train smt'")
    stored = _read_config(config_path)
    changes = build_config(SMTConfig, None, overrides)
    config = dataclasses.replace(stored, **{key: getattr(changes, key) for key in given})
    record = retune_smt(Path(model), Path(prepared), processes=threads, config=config)
    click.echo(f"tuned {model}: dev BLEU (tokenised) {record['dev_bleu_untuned']:.2f} "
               f"untuned -> {record['dev_bleu']:.2f}")


@train.command("nmt")
@click.argument("prepared", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Wall-clock budget of training, validation included.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@_config_options
def train_nmt_command(prepared: str, out_dir: str, max_minutes: float | None,
                      threads: int | None, config_path: str | None,
                      overrides: tuple[str, ...]) -> None:
    """Train the LSTM encoder-decoder on PREPARED (resumes if OUT has a checkpoint)."""
    from mtcompare.config import build_config
    from mtcompare.nmt.train import NMTConfig, train_nmt

    config = build_config(NMTConfig, config_path, overrides,
                          max_minutes=max_minutes, threads=threads)
    train_nmt(Path(prepared), Path(out_dir), config)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process says it
        click.echo(f"NMT model written to {out_dir}")


# ---- word alignment ------------------------------------------------------------

@cli.command()
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False),
              help="Tokenised pairs 'src ||| tgt', one a line (default: stdin).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False),
              help="Pharaoh links 'i-j' (0-based source-target), one line a pair "
                   "(default: stdout).")
@click.option("--prepared", type=click.Path(file_okay=False),
              help="Align the training split of a prepared directory instead.")
@click.option("--alignment-model", type=click.Choice(["ibm1", "hmm"]),
              help="What to train in each direction: IBM Model 1 alone, or IBM Model 1 "
                   "then the HMM alignment model.  [default: hmm]")
@click.option("--iterations", type=click.IntRange(min=1),
              help="EM iterations of IBM Model 1 in each direction.  [default: 5]")
@click.option("--hmm-iterations", type=click.IntRange(min=1),
              help="EM iterations of the HMM in each direction, after IBM Model 1.  "
                   "[default: 5]")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="Align with the models that --save-model wrote to this directory "
                   "instead of training.")
@click.option("--save-model", "save_dir", type=click.Path(file_okay=False),
              help="Also save the trained models (both directions) to this directory, "
                   "to align new pairs later with --model.")
@click.option("--heuristic", default="grow-diag-final-and", show_default=True,
              type=click.Choice(["intersection", "union", "grow-diag", "grow-diag-final",
                                 "grow-diag-final-and"]))
@click.option("--gold", type=click.Path(dir_okay=False),
              help="Gold links (i-j sure, i?j possible): print precision, recall, AER.")
def align(input_path: str | None, output_path: str | None, prepared: str | None,
          alignment_model: str | None, iterations: int | None,
          hmm_iterations: int | None, model_dir: str | None, save_dir: str | None,
          heuristic: str, gold: str | None) -> None:
    """Word-align tokenised sentence pairs both ways, symmetrised.

    Trains IBM Model 1 then the HMM alignment model in each direction (or only
    IBM Model 1), or aligns with models saved before (--model); words unseen in
    training are placed by the HMM's jump model or, with IBM Model 1, unaligned.
    """
    from mtcompare.fileio import decode_lines, read_lines, write_lines
    from mtcompare.smt.align import (alignment_error_rate, format_links,
                                     load_alignment_model, parse_links,
                                     save_alignment_model, train_alignment_models)

    if model_dir:
        given = [option for option, value in (
            ("--alignment-model", alignment_model), ("--iterations", iterations),
            ("--hmm-iterations", hmm_iterations), ("--save-model", save_dir)) if value]
        if given:
            raise MtcError(f"--model {model_dir} aligns with models already trained; "
                           f"drop {', '.join(given)}")
    if hmm_iterations and alignment_model == "ibm1":
        raise MtcError("--hmm-iterations sets HMM training; drop it or use "
                       "--alignment-model hmm")
    models = load_alignment_model(model_dir) if model_dir else None

    if prepared:
        from mtcompare.data.prepare import prepared_languages

        src_lang, tgt_lang = prepared_languages(prepared)
        pairs = list(zip(read_lines(Path(prepared) / f"train.tok.{src_lang}"),
                         read_lines(Path(prepared) / f"train.tok.{tgt_lang}")))
        source_name = f"{prepared}/train.tok.{src_lang}"
        languages = (src_lang, tgt_lang)
        if models and models.languages not in (languages, ("source", "target")):
            saved = "->".join(models.languages)
            raise MtcError(f"--model {model_dir} aligns {saved} but {prepared} is "
                           f"{src_lang}->{tgt_lang}; use a model of that direction")
    else:
        source_name = input_path or "<stdin>"
        lines = (read_lines(input_path) if input_path
                 else decode_lines(sys.stdin.buffer.read(), "<stdin>"))
        pairs = [_split_pair(line, source_name, number)
                 for number, line in enumerate(lines, start=1)]
        languages = ("source", "target")

    usable = [index for index, (src, tgt) in enumerate(pairs) if src.split() and tgt.split()]
    if len(usable) < len(pairs):
        logger.warning("%s: %d pair(s) with an empty side get an empty alignment line",
                       source_name, len(pairs) - len(usable))
    if save_dir and not usable:
        raise MtcError(f"{source_name}: no pair has words on both sides; there is "
                       "nothing to train a model to save on")
    alignments: list[set[tuple[int, int]]] = [set() for _ in pairs]
    if usable:
        source = [pairs[index][0].split() for index in usable]
        target = [pairs[index][1].split() for index in usable]
        if models is None:
            models = train_alignment_models(source, target, iterations or 5,
                                            model=alignment_model or "hmm",
                                            hmm_iterations=hmm_iterations or 5,
                                            languages=languages)
        if save_dir:
            save_alignment_model(save_dir, models)
            logger.info("alignment models (%s, both directions) saved to %s",
                        models.kind, save_dir)
        for index, links in zip(usable, models.align(source, target, heuristic)):
            alignments[index] = links
    output = [format_links(links) for links in alignments]
    if output_path:
        write_lines(output_path, output)
    else:
        sys.stdout.write("".join(line + "\n" for line in output))

    if gold:
        gold_lines = read_lines(gold)
        if len(gold_lines) != len(pairs):
            raise MtcError(f"{gold} has {len(gold_lines):,} lines but there are "
                           f"{len(pairs):,} sentence pairs; give one gold line per pair")
        parsed = [parse_links(line, f"{gold}:{number}")
                  for number, line in enumerate(gold_lines, start=1)]
        scores = alignment_error_rate(alignments, [s for s, _ in parsed],
                                      [p for _, p in parsed])
        click.echo(f"precision {scores.precision:.4f}  recall {scores.recall:.4f}  "
                   f"AER {scores.aer:.4f}", err=bool(not output_path))


def _split_pair(line: str, source: str, number: int) -> tuple[str, str]:
    if not line.strip():
        return "", ""
    if " ||| " not in f" {line} ":
        raise MtcError(f"{source}:{number}: no ' ||| ' between source and target; "
                       "write 'source tokens ||| target tokens'")
    src, _, tgt = f" {line} ".partition(" ||| ")
    return src.strip(), tgt.strip()


# ---- language model ------------------------------------------------------------

@cli.group()
def lm() -> None:
    """Train an n-gram language model or measure perplexity (tokenised text)."""


@lm.command("train")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Tokenised training text, one sentence a line.")
@click.option("-o", "--output", "output_path", required=True,
              type=click.Path(dir_okay=False), help="ARPA file to write (.gz compresses).")
@click.option("--order", default=3, show_default=True, type=click.IntRange(1, 9))
def lm_train(input_path: str, output_path: str, order: int) -> None:
    """Estimate an interpolated modified Kneser-Ney model and write it as ARPA."""
    from mtcompare.fileio import read_lines
    from mtcompare.smt.lm import train_kneser_ney

    sentences = [line.split() for line in read_lines(input_path)]
    train_kneser_ney(sentences, order=order).write_arpa(output_path)
    click.echo(f"{order}-gram model of {len(sentences):,} sentences written to {output_path}")


@lm.command("ppl")
@click.argument("arpa", type=click.Path(dir_okay=False))
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Tokenised text, one sentence a line.")
def lm_ppl(arpa: str, input_path: str) -> None:
    """Perplexity of a text under an ARPA model (</s> and unknown words included)."""
    from mtcompare.fileio import read_lines
    from mtcompare.smt.lm import NGramLanguageModel

    lines = read_lines(input_path)
    model = NGramLanguageModel.read_arpa(arpa)
    words = sum(len(line.split()) for line in lines)
    click.echo(f"{input_path}: {len(lines):,} sentences, {words:,} words, "
               f"perplexity {model.perplexity(lines):.4f}")


# ---- translate / evaluate --------------------------------------------------

@cli.command()
@click.argument("model", type=click.Path(file_okay=False))
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False),
              help="Raw source text, one segment a line (default: stdin).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False),
              help="Where to write translations (default or '-': stdout).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1),
              help="Decoder processes (SMT) or torch threads (NMT).")
@click.option("--n-best", "nbest_size", type=click.IntRange(min=1),
              help="Also write the N best translations of each line (--n-best-out).")
@click.option("--n-best-out", "nbest_path", type=click.Path(dir_okay=False),
              help="Where to write the n-best list: 'line ||| text ||| features ||| score'.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="SMT: write each 1-best's phrase segmentation, 'the car |0-1| ...'.")
@click.option("--untuned", is_flag=True,
              help="SMT: translate with the configured weights, not the tuned ones.")
def translate(model: str, input_path: str | None, output_path: str | None,
              threads: int, nbest_size: int | None, nbest_path: str | None,
              trace_path: str | None, untuned: bool) -> None:
    """Translate raw text with a trained SMT or NMT MODEL, line by line."""
    from mtcompare.fileio import decode_lines, read_lines, write_lines
    from mtcompare.translator import load_translator

    if (nbest_size is None) != (nbest_path is None):
        raise MtcError("--n-best N and --n-best-out FILE go together; give both")
    if output_path == "-":
        output_path = None  # stdout
    _check_output_paths(input_path, output_path, nbest_path, trace_path)
    # A file is read before the (slow) model load, so a bad path fails at once;
    # stdin after it, so an error in the model does not wait for the input.
    lines = read_lines(input_path) if input_path else None
    translator = load_translator(model, threads=threads, tuned=not untuned)
    wants_details = nbest_size is not None or trace_path is not None
    if wants_details and not hasattr(translator, "translate_nbest"):
        raise MtcError(f"{model}: this {translator.name.upper()} model gives no "
                       "n-best lists or traces")
    if trace_path is not None and translator.name != "smt":
        raise MtcError("--trace shows SMT phrase segmentations; this is an NMT model")
    if lines is None:
        lines = decode_lines(sys.stdin.buffer.read(), "<stdin>")
    if wants_details:
        lists = translator.translate_nbest(lines, nbest_size or 1)
        translations = [entries[0].text if entries else "" for entries in lists]
    else:
        translations = translator.translate(lines)
    if len(translations) != len(lines):
        raise MtcError(f"internal error: {len(lines)} lines in, {len(translations)} out")
    if nbest_path is not None:
        write_lines(nbest_path, (
            f"{number} ||| {entry.text} ||| {entry.features} ||| {entry.score:.6g}"
            for number, entries in enumerate(lists) for entry in entries))
    if trace_path is not None:
        write_lines(trace_path, (entries[0].trace if entries else "" for entries in lists))
    if output_path:
        write_lines(output_path, translations)
    else:
        sys.stdout.write("".join(line + "\n" for line in translations))
        sys.stdout.flush()


def _check_output_paths(input_path: str | None, *outputs: str | None) -> None:
    """Before any work: outputs must be distinct, not the input, and creatable."""
    given = [Path(path) for path in outputs if path]
    resolved = [path.resolve() for path in given]
    if len(set(resolved)) < len(resolved):
        raise MtcError("two outputs name the same file; give each its own path")
    if input_path and Path(input_path).resolve() in resolved:
        raise MtcError(f"{input_path}: is the input; write the outputs elsewhere")
    for path in given:
        if path.is_dir():
            raise MtcError(f"{path}: is a directory; give a file name")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise MtcError(f"{parent}: is a file, so {path} cannot be created; "
                           "give another path")


@cli.command()
@click.argument("model", type=click.Path(file_okay=False))
@click.option("--line", "text", required=True, help="One raw source sentence.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False),
              help="JSON file to write (default: stdout).")
def attention(model: str, text: str, output_path: str | None) -> None:
    """Export the attention weights of an NMT MODEL's translation of one line.

    Writes JSON: {"source": pieces, "target": pieces, "weights": one row per
    target piece, one column per source piece, each row summing to one}.
    """
    import json

    from mtcompare.fileio import write_text
    from mtcompare.translator import load_translator

    translator = load_translator(model, threads=1)
    if not hasattr(translator, "attention"):
        raise MtcError(f"{model}: attention weights exist only for NMT models")
    source, target, weights = translator.attention(text)
    record = json.dumps({"source": source, "target": target, "weights": weights},
                        ensure_ascii=False) + "\n"
    if output_path:
        write_text(output_path, record)
    else:
        sys.stdout.write(record)


@cli.command()
@click.option("--ref", "reference", required=True, type=click.Path(dir_okay=False),
              help="Raw reference translation, one segment a line.")
@click.argument("hypotheses", nargs=-1, required=True, type=click.Path(dir_okay=False))
def evaluate(reference: str, hypotheses: tuple[str, ...]) -> None:
    """Score detokenised HYPOTHESES against the raw reference with sacreBLEU."""
    from mtcompare.eval.metrics import score_corpus
    from mtcompare.fileio import read_lines

    references = read_lines(reference)
    for path in hypotheses:
        hypothesis = read_lines(path)
        if len(hypothesis) != len(references):
            raise MtcError(f"{path} has {len(hypothesis):,} lines but {reference} has "
                           f"{len(references):,}; translate every reference line")
        scores = score_corpus(hypothesis, references)
        for score in scores.values():
            click.echo(f"{path}\t{score.metric}\t{score.score:.2f}\t{score.signature}")


# ---- benchmark -------------------------------------------------------------

@cli.command()
@click.argument("corpus", required=False, default="bible-es-en")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory; re-running skips the stages already done.")
@click.option("--train-size", type=click.IntRange(min=1),
              help="Use only the first N training pairs (quick runs).")
@click.option("--nmt-minutes", default=40.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="NMT training budget in minutes.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1),
              help="CPU threads/processes for training and decoding.")
@click.option("--smt-set", multiple=True, metavar="KEY=VALUE",
              help="Override an SMT config setting (repeatable).")
@click.option("--nmt-set", multiple=True, metavar="KEY=VALUE",
              help="Override an NMT config setting (repeatable).")
def benchmark(corpus: str, run_dir: str, train_size: int | None, nmt_minutes: float,
              threads: int, smt_set: tuple[str, ...], nmt_set: tuple[str, ...]) -> None:
    """Prepare CORPUS, train both systems, translate the test set, write a report.

    CORPUS is 'bible-es-en' (the default) or a directory made by 'mtcompare
    prepare' (for your own corpora).
    """
    from mtcompare.benchmark import BenchmarkOptions, run_benchmark

    options = BenchmarkOptions(corpus=corpus, train_size=train_size,
                               nmt_minutes=nmt_minutes, threads=threads,
                               smt_overrides=smt_set, nmt_overrides=nmt_set)
    summary = run_benchmark(Path(run_dir), options)
    click.echo(summary)


if __name__ == "__main__":
    main()
