"""The prepare stage on user files: layout, cleaning counts, errors write nothing."""

import json

import pytest

from mtcompare.data.prepare import PrepareConfig, load_manifest, prepare
from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.fileio import read_lines


def _write_corpus(tmp_path, pairs):
    src, tgt = tmp_path / "corpus.de", tmp_path / "corpus.en"
    src.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return str(src), str(tgt)


def _pairs(count):
    return [(f"das haus nummer {i} ist klein .", f"the house number {i} is small .")
            for i in range(count)]


def test_seeded_split_layout_and_manifest(tmp_path):
    pairs = _pairs(60) + [("", "empty source"), ("wort " * 90, "word " * 90),
                          ("ein", "one two three four five six seven eight nine ten")]
    src, tgt = _write_corpus(tmp_path, pairs)
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de",
                           dev_size=5, test_size=5, seed=3)
    out = tmp_path / "prep"
    manifest = prepare(config, out)

    assert manifest == load_manifest(out)
    assert manifest["counts_before_cleaning"] == {"train": 53, "dev": 5, "test": 5}
    dropped_total = sum(manifest["dropped"].values())
    assert manifest["counts"]["train"] == 53 - dropped_total
    assert manifest["counts"]["dev"] == 5 and manifest["counts"]["test"] == 5
    for name in ("train", "dev", "test"):
        raw = read_lines(out / f"{name}.de")
        tokens = read_lines(out / f"{name}.tok.de")
        assert len(raw) == len(tokens) == manifest["counts"][name]
        assert len(read_lines(out / f"{name}.en")) == len(raw)
    assert not (out / "train.ref").exists()  # plain files carry no references
    pre = Preprocessor.load(out / "preprocess.en.json")
    assert pre.lang == "en"
    assert set(manifest["inputs"]) == {src, tgt}


def test_cleaning_counts_each_reason(tmp_path):
    pairs = [("", "empty source"), ("wort " * 81, "word " * 5),
             ("ein", "one two three four five six seven eight nine ten")] + _pairs(20)
    src, tgt = _write_corpus(tmp_path, pairs)
    (tmp_path / "dev").mkdir()
    dev_src, dev_tgt = _write_corpus(tmp_path / "dev", [("", "kept even if empty")])
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de",
                           dev_src=dev_src, dev_tgt=dev_tgt, test_src=dev_src,
                           test_tgt=dev_tgt)
    manifest = prepare(config, tmp_path / "prep")
    assert manifest["dropped"] == {"empty": 1, "too_long": 1, "ratio": 1}
    assert manifest["counts"] == {"train": 20, "dev": 1, "test": 1}


def test_train_size_keeps_the_first_pairs(tmp_path):
    src, tgt = _write_corpus(tmp_path, _pairs(40))
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de",
                           dev_size=5, test_size=5, train_size=7)
    manifest = prepare(config, tmp_path / "prep")
    assert manifest["counts"]["train"] == 7


def test_mismatched_files_write_nothing(tmp_path):
    src, tgt = _write_corpus(tmp_path, _pairs(10))
    with open(tgt, "a", encoding="utf-8") as stream:
        stream.write("one line too many\n")
    out = tmp_path / "prep"
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de")
    with pytest.raises(MtcError, match="10.*11|11.*10"):
        prepare(config, out)
    assert not out.exists()


def test_too_small_for_the_split_is_a_clear_error(tmp_path):
    src, tgt = _write_corpus(tmp_path, _pairs(10))
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de")
    with pytest.raises(MtcError, match="too few"):
        prepare(config, tmp_path / "prep")


def test_tsv_corpus(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in _pairs(30)), encoding="utf-8")
    config = PrepareConfig(corpus="files", tsv=str(tsv), src_lang="de", dev_size=3,
                           test_size=3)
    manifest = prepare(config, tmp_path / "prep")
    assert manifest["counts"]["train"] == 24
    assert json.loads((tmp_path / "prep" / "manifest.json").read_text())["src_lang"] == "de"


def test_inputs_that_outputs_would_overwrite_are_refused(tmp_path):
    out = tmp_path / "prep"
    out.mkdir()
    src, tgt = _write_corpus(out, _pairs(40))
    (out / "corpus.de").rename(out / "train.de")
    config = PrepareConfig(corpus="files", src=str(out / "train.de"), tgt=tgt, src_lang="de",
                           dev_size=5, test_size=5)
    with pytest.raises(MtcError, match="would be overwritten"):
        prepare(config, out)
    assert len(read_lines(out / "train.de")) == 40


@pytest.mark.parametrize("src_lang, tgt_lang, message", [
    ("en", "en", "both 'en'"), ("", "en", "not a language code"),
    ("../x", "en", "not a language code")])
def test_language_codes_are_checked(tmp_path, src_lang, tgt_lang, message):
    src, tgt = _write_corpus(tmp_path, _pairs(40))
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang=src_lang,
                           tgt_lang=tgt_lang, dev_size=5, test_size=5)
    with pytest.raises(MtcError, match=message):
        prepare(config, tmp_path / "prep")


def test_re_preparing_removes_the_old_manifest_first(tmp_path, monkeypatch):
    src, tgt = _write_corpus(tmp_path, _pairs(40))
    config = PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de", dev_size=5,
                           test_size=5)
    out = tmp_path / "prep"
    prepare(config, out)

    import mtcompare.data.prepare as module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(config, out)
    assert not (out / "manifest.json").exists()  # no longer looks complete


def test_a_damaged_preprocessor_is_caught_before_training(tmp_path):
    from mtcompare.data.prepare import prepared_languages

    src, tgt = _write_corpus(tmp_path, _pairs(40))
    out = tmp_path / "prep"
    prepare(PrepareConfig(corpus="files", src=src, tgt=tgt, src_lang="de", dev_size=5,
                          test_size=5), out)
    assert prepared_languages(out) == ("de", "en")
    (out / "preprocess.en.json").write_text('{"x":', encoding="utf-8")
    with pytest.raises(MtcError, match="preprocess.en.json"):
        prepared_languages(out)
