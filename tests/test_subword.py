"""SentencePiece training, loading and the token-line round trip."""

from pathlib import Path

import pytest

from mtcompare.data.subword import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SubwordModel,
    train_sentencepiece,
)
from mtcompare.errors import MtcError

LINES = [
    "in the beginning god created the heaven and the earth .",
    "and the earth was without form , and void ; and darkness was upon the deep .",
    "and god said , let there be light : and there was light .",
    "and god saw the light , that it was good .",
] * 5


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_round_trip_gives_back_the_token_line(tmp_path: Path, model_type: str) -> None:
    model = train_sentencepiece(LINES, tmp_path / "spm", 60, model_type)
    for line in LINES[:4]:
        assert model.decode(model.encode(line)) == line
        assert model.decode(model.encode_ids(line)) == line


def test_special_ids_are_reserved_and_skipped_when_decoding(tmp_path: Path) -> None:
    model = train_sentencepiece(LINES, tmp_path / "spm", 60)
    ids = model.encode_ids(LINES[0])
    assert min(ids) > EOS_ID
    assert [model.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
    ]
    assert model.decode([BOS_ID] + ids + [EOS_ID, PAD_ID]) == LINES[0]


def test_vocabulary_larger_than_corpus_allows_is_soft(tmp_path: Path) -> None:
    model = train_sentencepiece(LINES, tmp_path / "spm", 5000)
    assert 4 < model.vocab_size < 5000


def test_load_reads_what_train_wrote(tmp_path: Path) -> None:
    trained = train_sentencepiece(LINES, tmp_path / "spm", 60)
    loaded = SubwordModel.load(tmp_path / "spm.model")
    assert loaded.vocab_size == trained.vocab_size
    assert loaded.encode(LINES[2]) == trained.encode(LINES[2])


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MtcError, match="valid: unigram, bpe"):
        train_sentencepiece(LINES, tmp_path / "spm", 60, "char")
    with pytest.raises(MtcError, match="no non-empty"):
        train_sentencepiece(["", " "], tmp_path / "spm", 60)
    with pytest.raises(MtcError, match="not found"):
        SubwordModel.load(tmp_path / "missing.model")
