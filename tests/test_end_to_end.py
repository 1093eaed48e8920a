"""End to end: a slice of the real Bible through both systems, and the benchmark job.

The Bible test needs the SWORD modules (Debian sword-text-sparv,
sword-text-web, libsword-utils) and skips with that reason without them.
The benchmark test runs on a small corpus it writes itself.
"""

import json
import random

import pytest

from mtcompare.benchmark import BenchmarkOptions, run_benchmark
from mtcompare.config import build_config
from mtcompare.data import corpus
from mtcompare.data.prepare import PrepareConfig, prepare
from mtcompare.errors import MtcError
from mtcompare.eval.metrics import score_corpus
from mtcompare.fileio import read_lines
from mtcompare.nmt.train import NMTConfig, train_nmt
from mtcompare.smt.model import SMTConfig, train_smt
from mtcompare.translator import load_translator

TINY_NMT = ["embedding_size=32", "hidden_size=32", "vocab_size=300", "batch_tokens=600",
            "validate_every=20", "dev_bleu_sentences=10", "dev_perplexity_sentences=20",
            "max_steps=40"]
FAST_SMT = ["ibm1_iterations=3", "hmm_iterations=2", "stack_size=10", "phrase_limit=5",
            "max_phrase_length=4", "tune_sentences=40", "tune_nbest=20", "tune_iterations=2"]


@pytest.fixture(scope="module")
def bible_slice(tmp_path_factory):
    try:
        corpus.read_bible()
    except MtcError as error:
        pytest.skip(str(error))
    out = tmp_path_factory.mktemp("bible") / "prepared"
    prepare(PrepareConfig(train_size=2000), out)
    return out


def test_bible_slice_through_both_systems(bible_slice, tmp_path):
    manifest = json.loads((bible_slice / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"] == {"train": 2000, "dev": 1253, "test": 1288}
    assert read_lines(bible_slice / "test.ref")[0] == "Genesis 6:1"

    train_smt(bible_slice, tmp_path / "smt", build_config(SMTConfig, overrides=FAST_SMT))
    nmt_config = build_config(NMTConfig, overrides=TINY_NMT, max_minutes=1.0)
    train_nmt(bible_slice, tmp_path / "nmt", nmt_config)

    sources = read_lines(bible_slice / "test.es")[:40]
    references = read_lines(bible_slice / "test.en")[:40]
    copy_bleu = score_corpus(sources, references)["BLEU"].score
    smt = load_translator(tmp_path / "smt").translate(sources)
    assert len(smt) == len(sources)
    # 2,000 verses are enough for the phrase-based system to beat copying the source
    assert score_corpus(smt, references)["BLEU"].score > copy_bleu + 3
    nmt = load_translator(tmp_path / "nmt").translate(sources[:5] + [""])
    assert len(nmt) == 6 and nmt[-1] == ""


def _tiny_corpus(tmp_path):
    """A substitution language with adjective-noun swap, written for this test."""
    nouns = {"casa": "house", "perro": "dog", "libro": "book", "rey": "king",
             "ciudad": "city", "pan": "bread"}
    adjectives = {"grande": "big", "pequeño": "small", "viejo": "old", "nuevo": "new"}
    verbs = {"ve": "sees", "tiene": "has", "busca": "seeks"}
    rng = random.Random(7)
    source, target = [], []
    for _ in range(260):
        n1, n2 = rng.sample(sorted(nouns), 2)
        adjective = rng.choice(sorted(adjectives))
        verb = rng.choice(sorted(verbs))
        source.append(f"el {n1} {adjective} {verb} el {n2} .")
        target.append(f"the {adjectives[adjective]} {nouns[n1]} {verbs[verb]} the {nouns[n2]} .")
    (tmp_path / "c.es").write_text("\n".join(source) + "\n", encoding="utf-8")
    (tmp_path / "c.en").write_text("\n".join(target) + "\n", encoding="utf-8")
    prepared = tmp_path / "prepared"
    prepare(PrepareConfig(corpus="files", src=str(tmp_path / "c.es"),
                          tgt=str(tmp_path / "c.en"), dev_size=20, test_size=20), prepared)
    return prepared


def test_benchmark_job_writes_report_and_resumes(tmp_path):
    prepared = _tiny_corpus(tmp_path)
    options = BenchmarkOptions(corpus=str(prepared), nmt_minutes=1.0, threads=1,
                               smt_overrides=tuple(FAST_SMT), nmt_overrides=tuple(TINY_NMT))
    run = tmp_path / "run"
    summary = run_benchmark(run, options)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))

    assert set(results["systems"]) == {"smt", "nmt", "copy-source"}
    smt = results["systems"]["smt"]
    assert smt["BLEU"] > results["systems"]["copy-source"]["BLEU"]
    for name in ("smt", "nmt"):
        system = results["systems"][name]
        assert system["train_seconds"] > 0 and system["sentences_per_second"] > 0
        assert system["model_bytes"] > 0
        assert system["signatures"]["BLEU"].startswith("nrefs:1")
    assert len(results["examples"]) == 10
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "| smt |" in report and "| nmt |" in report
    assert "smt" in summary and "BLEU" in summary
    assert len(read_lines(run / "test.smt.en")) == 20

    # A second run reuses every stage: the recorded times do not change.
    stages_before = (run / "stages.json").read_text(encoding="utf-8")
    run_benchmark(run, options)
    assert (run / "stages.json").read_text(encoding="utf-8") == stages_before


def test_benchmark_refuses_a_run_directory_with_other_options(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "options.json").write_text(json.dumps({"corpus": "bible-es-en",
                                                  "train_size": 2000}), encoding="utf-8")
    with pytest.raises(MtcError, match="other options .*train_size"):
        run_benchmark(run, BenchmarkOptions(train_size=500))


def test_model_size_counts_what_translation_reads(tmp_path):
    from mtcompare.benchmark import _model_size
    from mtcompare.translator import write_model_info

    (tmp_path / "weights.bin").write_bytes(b"x" * 100)
    (tmp_path / "resume.bin").write_bytes(b"x" * 1000)
    write_model_info(tmp_path, "nmt", translation_files=["weights.bin"])
    assert _model_size(tmp_path) == 100


def test_a_bad_override_does_not_lock_the_run_directory(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(MtcError, match="unknown setting 'bogus'"):
        run_benchmark(run, BenchmarkOptions(smt_overrides=("bogus=1",)))
    assert not (run / "options.json").exists()
