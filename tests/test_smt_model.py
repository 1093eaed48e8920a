"""End-to-end tests of SMT training and translation on a synthetic language.

The source language substitutes every English word and puts adjectives after
their nouns ("el gato rojo ve ..." = "the red cat sees ..."), so a correct
system must learn both the word translations and the reordering.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from mtcompare.config import build_config

from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.smt.decoder import Decoder
from mtcompare.smt.lm import NGramLanguageModel
from mtcompare.smt.model import SMTConfig, SMTTranslator, train_smt
from mtcompare.smt.phrases import PhraseTable
from mtcompare.translator import load_translator

NOUNS = {
    "gato": "cat",
    "perro": "dog",
    "casa": "house",
    "libro": "book",
    "coche": "car",
}
ADJECTIVES = {"rojo": "red", "grande": "big", "viejo": "old", "nuevo": "new"}
VERBS = {"ve": "sees", "tiene": "has"}


def sentence_pair(noun1, adjective1, verb, noun2, adjective2) -> tuple[str, str]:
    source = f"el {noun1} {adjective1} {verb} el {noun2} {adjective2} ."
    target = (
        f"the {ADJECTIVES[adjective1]} {NOUNS[noun1]} {VERBS[verb]} "
        f"the {ADJECTIVES[adjective2]} {NOUNS[noun2]} ."
    )
    return source, target


def all_pairs() -> list[tuple[str, str]]:
    combinations = list(itertools.product(NOUNS, ADJECTIVES, VERBS, NOUNS, ADJECTIVES))
    random.Random(3).shuffle(combinations)
    return [sentence_pair(*combination) for combination in combinations]


def make_prepared(directory: Path, pairs: list[tuple[str, str]]) -> None:
    directory.mkdir()
    manifest = {
        "corpus": "synthetic",
        "src_lang": "xx",
        "tgt_lang": "en",
        "case": "truecase",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for lang, side in (("xx", 0), ("en", 1)):
        lines = [pair[side] for pair in pairs]
        preprocessor = Preprocessor.train(lang, lines)
        preprocessor.save(directory / f"preprocess.{lang}.json")
        (directory / f"train.{lang}").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )
        tokenized = [" ".join(preprocessor.encode(line)) for line in lines]
        (directory / f"train.tok.{lang}").write_text(
            "\n".join(tokenized) + "\n", encoding="utf-8"
        )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("smt")
    pairs = all_pairs()
    make_prepared(root / "prep", pairs[:120])
    config = SMTConfig(max_phrase_length=3, ibm1_iterations=10, lm_order=3)
    train_smt(root / "prep", root / "model", config)
    return root, pairs[120:], config


def test_translates_held_out_sentences(trained):
    root, held_out, _ = trained
    translator = SMTTranslator.load(root / "model")
    target_pre = Preprocessor.load(root / "model" / "preprocess.en.json")
    sources = [source for source, _ in held_out[:12]]
    expected = [target_pre.decode(target.split()) for _, target in held_out[:12]]
    assert translator.translate(sources) == expected


def _translate_with_full_table(model: Path, lines: list[str]) -> list[str]:
    """What the translator did before it filtered: decode with every entry."""
    config = SMTConfig(**json.loads((model / "config.json").read_text()))
    phrase_table = PhraseTable.read_moses(
        model / "phrase-table.gz", limit=config.phrase_limit
    )
    language_model = NGramLanguageModel.read_arpa(model / "lm.arpa.gz")
    decoder = Decoder(phrase_table, language_model, config.decoder_config())
    source_pre = Preprocessor.load(model / "preprocess.xx.json")
    target_pre = Preprocessor.load(model / "preprocess.en.json")
    outputs = []
    for line in lines:
        tokens = source_pre.encode(line)
        size = config.max_input_length
        words = [
            word
            for start in range(0, len(tokens), size)
            for word in decoder.decode(tokens[start : start + size])
        ]
        outputs.append(target_pre.decode(words) if words else "")
    return outputs


def _shuffled_lines(held_out: list[tuple[str, str]], count: int) -> list[str]:
    """Held-out sources with their words shuffled: odd spans, unknown words."""
    generator = random.Random(5)
    lines = []
    for source, _ in held_out[:count]:
        words = source.split() + ["desconocido"]
        generator.shuffle(words)
        lines.append(" ".join(words))
    return lines


def test_filtered_phrase_table_translates_as_the_full_one(trained, monkeypatch):
    root, held_out, _ = trained
    model = root / "model"
    first = [source for source, _ in held_out[:6]] + _shuffled_lines(held_out, 4)
    second = first[:3] + [source for source, _ in held_out[6:9]]
    second += ["", " ".join([held_out[9][0]] * 14)]  # 112 tokens: two chunks
    expected = _translate_with_full_table(model, first + second)
    full_sources = len(PhraseTable.read_moses(model / "phrase-table.gz").entries)
    reads = []
    read_moses = PhraseTable.read_moses

    def counting_read(*args, **kwargs):
        reads.append(kwargs["sources"])
        return read_moses(*args, **kwargs)

    monkeypatch.setattr(PhraseTable, "read_moses", counting_read)
    translator = SMTTranslator.load(model)
    assert reads == []
    assert translator.translate(first) + translator.translate(second) == expected
    assert len(reads) == 2 and len(translator.phrase_table.entries) < full_sources
    assert not reads[0] & reads[1]  # the second read asks only for new phrases
    assert translator.translate(first[:3]) == expected[:3] and len(reads) == 2


def test_model_directory_round_trips(trained):
    root, _, config = trained
    model = root / "model"
    for name in (
        "phrase-table.gz",
        "lm.arpa.gz",
        "config.json",
        "preprocess.xx.json",
        "preprocess.en.json",
        "model.json",
    ):
        assert (model / name).is_file(), name
    translator = load_translator(model)
    assert isinstance(translator, SMTTranslator) and translator.name == "smt"
    assert translator.config == config


def test_empty_long_and_strange_lines(trained):
    root, held_out, _ = trained
    translator = SMTTranslator.load(root / "model")
    long_line = " ".join([held_out[0][0]] * 30)  # 240 tokens: decoded in chunks
    outputs = translator.translate(["", long_line, "el gato \x07 ве ☃", "   "])
    assert outputs[0] == "" and outputs[3] == ""
    assert outputs[1].count("book") == 30 and outputs[1].count("car") == 30
    assert "☃" in outputs[2]


def test_rerun_reuses_stages_and_rejects_changed_settings(trained, tmp_path):
    root, _, config = trained
    table = root / "model" / "phrase-table.gz"
    before = table.stat().st_mtime_ns
    train_smt(root / "prep", root / "model", config)
    assert table.stat().st_mtime_ns == before
    with pytest.raises(MtcError, match="lm_order"):
        train_smt(
            root / "prep",
            root / "model",
            SMTConfig(max_phrase_length=3, ibm1_iterations=10, lm_order=4),
        )


def test_missing_prepared_directory_is_a_user_error(tmp_path):
    with pytest.raises(MtcError, match="mtcompare prepare"):
        train_smt(tmp_path / "nothing", tmp_path / "model")


def test_config_errors_list_valid_values():
    with pytest.raises(MtcError, match="valid: .*grow-diag-final-and"):
        SMTConfig(symmetrization="diagonal")
    with pytest.raises(MtcError, match="unknown setting"):
        build_config(SMTConfig, overrides=["stack=3"])
    with pytest.raises(MtcError, match="stack_size must be at least 1"):
        build_config(SMTConfig, overrides=["stack_size=0"])
    assert build_config(SMTConfig, overrides=["weights.phrase=[1, 1, 1, 1]"]).weights.phrase == (
        1.0, 1.0, 1.0, 1.0)


def test_a_damaged_model_file_says_to_train_again(trained, tmp_path):
    import shutil

    root, _, _ = trained
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    (model / "lm.arpa.gz").write_bytes(b"not gzip at all")
    with pytest.raises(MtcError, match="lm.arpa.gz.*train it again"):
        SMTTranslator.load(model)
