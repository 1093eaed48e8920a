"""Training end to end on a tiny prepared directory: files, resume, checkpoints,
repeatability and the translator seam."""

import json
import logging
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.nmt.model import ModelConfig, Seq2Seq
from mtcompare.nmt.train import NMTConfig, load_checkpoint, save_checkpoint, train_nmt

torch.set_num_threads(1)


NUMBERS = {
    "uno": "one",
    "dos": "two",
    "tres": "three",
    "cuatro": "four",
    "cinco": "five",
    "seis": "six",
    "siete": "seven",
    "ocho": "eight",
}


def _pairs(count: int, offset: int) -> list[tuple[str, str]]:
    words = list(NUMBERS)
    pairs = []
    for index in range(count):
        source = [
            words[(index * 3 + k + offset) % len(words)] for k in range(2 + index % 4)
        ]
        target = [NUMBERS[word] for word in source]
        pairs.append((" ".join(source) + ".", " ".join(target) + "."))
    return pairs


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared directory as 'mtcompare prepare' writes it, in miniature."""
    prep = tmp_path / "prep"
    prep.mkdir()
    splits = {"train": _pairs(60, 0), "dev": _pairs(12, 1), "test": _pairs(6, 2)}
    for lang, side in (("es", 0), ("en", 1)):
        raw = [pair[side].capitalize() for pair in splits["train"]]
        pre = Preprocessor.train(lang, raw)
        pre.save(prep / f"preprocess.{lang}.json")
        for split, pairs in splits.items():
            lines = [pair[side].capitalize() for pair in pairs]
            (prep / f"{split}.{lang}").write_text(
                "\n".join(lines) + "\n", encoding="utf-8"
            )
            tokens = [" ".join(pre.encode(line)) for line in lines]
            (prep / f"{split}.tok.{lang}").write_text(
                "\n".join(tokens) + "\n", encoding="utf-8"
            )
    manifest = {"corpus": "toy", "src_lang": "es", "tgt_lang": "en", "case": "truecase"}
    (prep / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return prep


def _tiny_config(**changes) -> NMTConfig:
    values = dict(
        vocab_size=40,
        embedding_size=16,
        hidden_size=24,
        dropout=0.1,
        lr=5e-3,
        batch_tokens=120,
        max_steps=12,
        validate_every=6,
        max_minutes=5,
        beam_size=3,
    )
    values.update(changes)
    return NMTConfig(**values)


def test_training_writes_a_complete_model_directory(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config())
    for name in (
        "model.json",
        "config.json",
        "best.pt",
        "last.pt",
        "spm.es.model",
        "spm.en.model",
        "preprocess.es.json",
        "preprocess.en.json",
    ):
        assert (out / name).is_file(), name
    info = json.loads((out / "model.json").read_text())
    assert info["kind"] == "nmt" and info["steps"] == 12
    assert not list(out.glob(".*.tmp"))


def test_resume_continues_from_the_last_checkpoint(
    prepared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.train"):
        train_nmt(prepared, out, _tiny_config(max_steps=12))
    assert "resuming from" in caplog.text
    checkpoint = load_checkpoint(out / "last.pt", torch.device("cpu"))
    assert checkpoint["progress"]["step"] == 12
    assert checkpoint["optimizer"]["state"]  # Adam moments travelled with it
    assert json.loads((out / "model.json").read_text())["steps"] == 12


def test_resume_refuses_a_different_architecture(
    prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config(max_steps=6))
    with pytest.raises(MtcError, match="new output directory"):
        train_nmt(prepared, out, _tiny_config(hidden_size=32))


def test_same_seed_gives_the_same_model(prepared: Path, tmp_path: Path) -> None:
    train_nmt(prepared, tmp_path / "a", _tiny_config(max_steps=6))
    train_nmt(prepared, tmp_path / "b", _tiny_config(max_steps=6))
    first = load_checkpoint(tmp_path / "a" / "last.pt", torch.device("cpu"))["model"]
    second = load_checkpoint(tmp_path / "b" / "last.pt", torch.device("cpu"))["model"]
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(30, 30, 8, 8)
    model = Seq2Seq(config).eval()
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "n": 3})
    restored = Seq2Seq(config).eval()
    restored.load_state_dict(
        load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))["model"]
    )
    src, lengths, tgt = (
        torch.tensor([[5, 6, 3]]),
        torch.tensor([3]),
        torch.tensor([[2, 7]]),
    )
    assert torch.equal(model(src, lengths, tgt), restored(src, lengths, tgt))


def test_missing_manifest_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MtcError, match="run 'mtcompare prepare"):
        train_nmt(tmp_path, tmp_path / "model", _tiny_config())


def test_translator_keeps_line_count_and_empty_lines(
    prepared: Path, tmp_path: Path
) -> None:
    from mtcompare.translator import load_translator

    out = tmp_path / "model"
    train_nmt(prepared, out, _tiny_config())
    translator = load_translator(out)
    assert translator.name == "nmt"
    lines = ["Uno dos .", "", "Tres cuatro cinco .", " ", "Seis siete " * 300]
    outputs = translator.translate(lines)
    assert len(outputs) == len(lines)
    assert outputs[1] == "" and outputs[3] == ""
    assert all(isinstance(output, str) for output in outputs)
    assert translator.translate([]) == []
