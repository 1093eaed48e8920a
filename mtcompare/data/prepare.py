"""``mtcompare prepare``: a corpus source in, a prepared directory out.

The steps, in order: read the pairs (SWORD Bible, line-aligned files, TSV or
TMX), split them (the fixed Bible rule, given dev/test files, or a seeded
split), train the shared preprocessors on the training side only, tokenise
every split, clean the training split (length and ratio filters, each drop
counted), and write everything with ``manifest.json`` last: a directory with
a manifest is complete. The layout is described in ``docs/CONTRACTS.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mtcompare import __version__
from mtcompare.data import corpus as corpora
from mtcompare.data.clean import clean_pairs, normalize_text
from mtcompare.data.corpus import Pair
from mtcompare.data.split import SPLITS, bible_split, seeded_split, split_pairs
from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.fileio import write_lines, write_text

logger = logging.getLogger(__name__)

BIBLE = "bible-es-en"
MANIFEST = "manifest.json"


@dataclass
class PrepareConfig:
    """What to read and how to clean it; every field is recorded in the manifest."""

    corpus: str = BIBLE  # "bible-es-en", or "files" for the options below
    src: str | None = None  # line-aligned source file
    tgt: str | None = None  # line-aligned target file
    tsv: str | None = None  # or one TSV file, src<TAB>tgt
    tmx: str | None = None  # or one TMX file
    src_lang: str = "es"
    tgt_lang: str = "en"
    dev_src: str | None = None
    dev_tgt: str | None = None
    test_src: str | None = None
    test_tgt: str | None = None
    dev_size: int = 1000  # for a seeded split
    test_size: int = 1000
    seed: int = 1
    train_size: int | None = None  # keep the first N cleaned training pairs
    max_length: int = 80  # tokens a side, as Moses' clean-corpus-n
    max_ratio: float = 9.0
    case: str = "truecase"


def is_prepared(directory: Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def load_manifest(directory: str | Path) -> dict:
    """The manifest of a prepared directory, with its language codes checked."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise MtcError(
            f"{directory}: not a prepared corpus (no {MANIFEST}); "
            "run 'mtcompare prepare --out DIR' first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(manifest["src_lang"], str) and isinstance(manifest["tgt_lang"], str)):
            raise TypeError("language codes are not strings")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MtcError(
            f"{path}: not a valid manifest ({error}); run 'mtcompare prepare' again"
        ) from None
    return manifest


def prepared_languages(directory: str | Path) -> tuple[str, str]:
    """(source, target) language codes of a prepared directory.

    Also checks that the preprocessor files a model copies are there and
    load, so a training fails before it starts rather than after an hour.
    """
    manifest = load_manifest(directory)
    languages = manifest["src_lang"], manifest["tgt_lang"]
    for lang in languages:
        path = Path(directory) / f"preprocess.{lang}.json"
        if not path.is_file():
            raise MtcError(f"{path}: missing; run 'mtcompare prepare' again")
        Preprocessor.load(path)  # a damaged file fails here, not in the trained model
    return languages


def prepare(config: PrepareConfig, out_dir: str | Path) -> dict:
    """Prepare a corpus into ``out_dir`` and return its manifest."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    _check_config(config, out_dir)
    splits, inputs = _read_splits(config)
    logger.info(
        "read %s pairs: %s",
        f"{sum(len(pairs) for pairs in splits.values()):,}",
        ", ".join(f"{len(splits[name]):,} {name}" for name in SPLITS),
    )
    counts_before = {name: len(splits[name]) for name in SPLITS}

    # Normalising whitespace also keeps a segment that held a newline (TMX, TSV)
    # on one line, so the files stay line-aligned. It filters nothing.
    splits = {
        name: [Pair(normalize_text(pair.src), normalize_text(pair.tgt), pair.ref)
               for pair in pairs]
        for name, pairs in splits.items()
    }
    preprocessors, train_tokens = _train_preprocessors(config, splits["train"])
    kept, report = clean_pairs(
        splits["train"], train_tokens["src"], train_tokens["tgt"],
        max_length=config.max_length, max_ratio=config.max_ratio,
    )
    if config.train_size is not None:
        kept = kept[: config.train_size]
    splits["train"] = [splits["train"][index] for index in kept]
    train_tokens = {side: [train_tokens[side][index] for index in kept] for side in train_tokens}
    logger.info("cleaned training data: kept %s pairs (%s)", f"{len(kept):,}",
                ", ".join(f"{count:,} dropped as {reason}"
                          for reason, count in report.dropped.items()))

    if out_dir.exists() and not out_dir.is_dir():
        raise MtcError(f"{out_dir}: exists and is not a directory; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Until the new manifest is written last, the directory is not complete.
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for name in SPLITS:
        _write_split(out_dir, name, splits[name], preprocessors, config,
                     train_tokens if name == "train" else None)
    for side, lang in (("src", config.src_lang), ("tgt", config.tgt_lang)):
        preprocessors[side].save(out_dir / f"preprocess.{lang}.json")

    manifest = {
        "corpus": config.corpus,
        "src_lang": config.src_lang,
        "tgt_lang": config.tgt_lang,
        "case": config.case,
        "counts_before_cleaning": counts_before,
        "counts": {name: len(splits[name]) for name in SPLITS},
        "dropped": report.dropped,
        "options": asdict(config),
        "inputs": inputs,
        "mtcompare_version": __version__,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    logger.info("prepared %s in %.0f s", out_dir, manifest["seconds"])
    return manifest


_LANGUAGE_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")


def _check_config(config: PrepareConfig, out_dir: Path) -> None:
    """Refuse settings that would write wrong or clobbered files."""
    for option, code in (("--src-lang", config.src_lang), ("--tgt-lang", config.tgt_lang)):
        if not _LANGUAGE_CODE.fullmatch(code):
            raise MtcError(f"{option} {code!r} is not a language code such as 'es' or 'pt-BR'")
    if config.src_lang == config.tgt_lang:
        raise MtcError(f"--src-lang and --tgt-lang are both {config.src_lang!r}; the "
                       "prepared files are named by language, so give two different codes")
    if config.dev_size < 1 or config.test_size < 1:
        raise MtcError("--dev-size and --test-size must be at least 1: NMT validation "
                       "needs a dev set and the benchmark a test set")
    inputs = [config.src, config.tgt, config.tsv, config.tmx, config.dev_src,
              config.dev_tgt, config.test_src, config.test_tgt]
    outputs = {(out_dir / name).resolve() for name in _output_names(config)}
    for path in filter(None, inputs):
        if Path(path).resolve() in outputs:
            raise MtcError(f"{path}: this input would be overwritten by a prepared file "
                           f"of the same name in {out_dir}; choose another --out")


def _output_names(config: PrepareConfig) -> list[str]:
    names = [MANIFEST]
    for lang in (config.src_lang, config.tgt_lang):
        names.append(f"preprocess.{lang}.json")
        names += [f"{split}.{lang}" for split in SPLITS]
        names += [f"{split}.tok.{lang}" for split in SPLITS]
    return names + [f"{split}.ref" for split in SPLITS]


def _read_splits(config: PrepareConfig) -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """The pairs of each split and a sha256 of every input."""
    if config.corpus == BIBLE:
        if (config.src_lang, config.tgt_lang) != ("es", "en"):
            raise MtcError("the bible-es-en corpus is Spanish to English: use es and en")
        pairs = corpora.read_bible()
        labels = [bible_split(pair.ref) for pair in pairs]
        inputs = {"bible-es-en (SWORD spaRV1909eb, engWEB2015eb)": _hash_pairs(pairs)}
        return split_pairs(pairs, labels), inputs
    if config.corpus != "files":
        raise MtcError(f"unknown corpus {config.corpus!r}; valid: {BIBLE}, or give files")

    pairs, inputs = _read_user_pairs(config.src, config.tgt, config.tsv, config.tmx, config)
    if config.dev_src or config.test_src:
        if not (config.dev_src and config.dev_tgt and config.test_src and config.test_tgt):
            raise MtcError("give all four of --dev-src, --dev-tgt, --test-src, --test-tgt")
        dev, dev_inputs = _read_user_pairs(config.dev_src, config.dev_tgt, None, None, config)
        test, test_inputs = _read_user_pairs(config.test_src, config.test_tgt, None, None, config)
        inputs.update(dev_inputs)
        inputs.update(test_inputs)
        return {"train": pairs, "dev": dev, "test": test}, inputs

    if 2 * (config.dev_size + config.test_size) > len(pairs):
        logger.warning("dev and test take %s of the %s pairs, leaving less than half for "
                       "training; consider smaller --dev-size/--test-size",
                       f"{config.dev_size + config.test_size:,}", f"{len(pairs):,}")
    if config.dev_size + config.test_size >= len(pairs):
        raise MtcError(
            f"the corpus has {len(pairs):,} pairs, too few for a dev set of "
            f"{config.dev_size:,} and a test set of {config.test_size:,}; "
            "lower --dev-size/--test-size or give dev and test files"
        )
    labels = seeded_split(len(pairs), config.dev_size, config.test_size, config.seed)
    return split_pairs(pairs, labels), inputs


def _read_user_pairs(
    src: str | None, tgt: str | None, tsv: str | None, tmx: str | None, config: PrepareConfig
) -> tuple[list[Pair], dict[str, str]]:
    given = [option for option, value in (("--src/--tgt", src or tgt), ("--tsv", tsv),
                                          ("--tmx", tmx)) if value]
    if len(given) != 1:
        raise MtcError(
            "give the corpus as exactly one of --src FILE --tgt FILE, --tsv FILE or "
            f"--tmx FILE (got {', '.join(given) or 'none'})"
        )
    if src or tgt:
        if not (src and tgt):
            raise MtcError("--src and --tgt go together: give both files")
        return corpora.read_parallel_text(src, tgt), {src: _hash_file(src), tgt: _hash_file(tgt)}
    if tsv:
        return corpora.read_tsv(tsv), {tsv: _hash_file(tsv)}
    return corpora.read_tmx(tmx, config.src_lang, config.tgt_lang), {tmx: _hash_file(tmx)}


def _train_preprocessors(
    config: PrepareConfig, train: list[Pair]
) -> tuple[dict[str, Preprocessor], dict[str, list[list[str]]]]:
    """One preprocessor per side, trained on the training split only."""
    preprocessors, tokens = {}, {}
    for side, lang in (("src", config.src_lang), ("tgt", config.tgt_lang)):
        lines = [getattr(pair, side) for pair in train]
        tokenizer = Preprocessor(lang=lang, case=config.case)
        started = time.monotonic()
        tokens[side] = [tokenizer.tokenize(line) for line in lines]
        preprocessors[side] = Preprocessor.train(lang, lines, config.case, tokens=tokens[side])
        logger.info("tokenised %s lines of %s training text in %.1f s",
                    f"{len(lines):,}", lang, time.monotonic() - started)
    return preprocessors, tokens


def _write_split(
    out_dir: Path, name: str, pairs: list[Pair], preprocessors: dict[str, Preprocessor],
    config: PrepareConfig, tokens: dict[str, list[list[str]]] | None,
) -> None:
    for side, lang in (("src", config.src_lang), ("tgt", config.tgt_lang)):
        lines = [getattr(pair, side) for pair in pairs]
        preprocessor = preprocessors[side]
        if tokens is None:
            encoded = [preprocessor.encode(line) for line in lines]
        else:
            encoded = [preprocessor.apply_case(line_tokens) for line_tokens in tokens[side]]
        write_lines(out_dir / f"{name}.{lang}", lines)
        write_lines(out_dir / f"{name}.tok.{lang}", (" ".join(line) for line in encoded))
    if any(pair.ref for pair in pairs):
        write_lines(out_dir / f"{name}.ref", (pair.ref or "" for pair in pairs))


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise MtcError(f"{path}: cannot read ({error.strerror})") from None
    return digest.hexdigest()


def _hash_pairs(pairs: list[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(f"{pair.ref}\t{pair.src}\t{pair.tgt}\n".encode("utf-8"))
    return digest.hexdigest()
