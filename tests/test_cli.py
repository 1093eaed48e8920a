"""The command line: user errors are one line with exit status 2, never a traceback."""

import pytest

from mtcompare.cli import main


def run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_mismatched_line_counts(tmp_path, capsys):
    (tmp_path / "a.de").write_text("eins\nzwei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\n", encoding="utf-8")
    code, _, err = run(["prepare", "--out", str(tmp_path / "prep"), "--src",
                        str(tmp_path / "a.de"), "--tgt", str(tmp_path / "a.en")], capsys)
    _assert_one_line_error(code, err, "a.de", "a.en")
    assert not (tmp_path / "prep").exists()


def test_invalid_utf8_names_the_line(tmp_path, capsys):
    (tmp_path / "a.de").write_bytes("eins\nzwei\n".encode())
    (tmp_path / "a.en").write_bytes("one\nt\xe9o\n".encode("latin-1"))
    code, _, err = run(["prepare", "--out", str(tmp_path / "prep"), "--src",
                        str(tmp_path / "a.de"), "--tgt", str(tmp_path / "a.en")], capsys)
    _assert_one_line_error(code, err, "a.en:2")


def test_translate_with_something_that_is_no_model(tmp_path, capsys):
    code, _, err = run(["translate", str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "not a model directory")


def test_unknown_config_key_lists_valid_ones(tmp_path, capsys):
    code, _, err = run(["train", "nmt", str(tmp_path), "--out", str(tmp_path / "m"),
                        "--set", "no_such_key=1"], capsys)
    _assert_one_line_error(code, err, "no_such_key", "valid:")


def test_evaluate_prints_bleu_and_chrf_with_signatures(tmp_path, capsys):
    reference = tmp_path / "ref.en"
    reference.write_text("The king went home.\nHe said, “Go.”\n", encoding="utf-8")
    code, out, _ = run(["evaluate", "--ref", str(reference), str(reference)], capsys)
    assert code == 0
    assert "BLEU\t100.00\tnrefs:1|case:mixed" in out
    assert "chrF\t100.00" in out


def test_evaluate_line_count_mismatch(tmp_path, capsys):
    reference = tmp_path / "ref.en"
    reference.write_text("one\ntwo\n", encoding="utf-8")
    hypothesis = tmp_path / "hyp.en"
    hypothesis.write_text("one\n", encoding="utf-8")
    code, _, err = run(["evaluate", "--ref", str(reference), str(hypothesis)], capsys)
    _assert_one_line_error(code, err, "hyp.en has 1 lines")


def test_out_under_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "a.de").write_text("eins\n" * 30, encoding="utf-8")
    (tmp_path / "a.en").write_text("one\n" * 30, encoding="utf-8")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    code, _, err = run(["prepare", "--out", str(tmp_path / "afile" / "sub"), "--src",
                        str(tmp_path / "a.de"), "--tgt", str(tmp_path / "a.en"),
                        "--src-lang", "de", "--dev-size", "2", "--test-size", "2"], capsys)
    _assert_one_line_error(code, err, "afile")


def test_usage_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(["train", "nmt", str(tmp_path), "--out", str(tmp_path / "m"),
                        "--max-minutes", "0"], capsys)
    _assert_one_line_error(code, err, "--max-minutes", "--help")
    assert len(err.strip().splitlines()) == 1


def test_damaged_model_json(tmp_path, capsys):
    for content in (b'{"kind": "sm', b"[1, 2]", b"\xff\xfe"):
        (tmp_path / "model.json").write_bytes(content)
        code, _, err = run(["translate", str(tmp_path)], capsys)
        _assert_one_line_error(code, err, "model.json", "damaged")


def test_override_that_is_not_yaml(tmp_path, capsys):
    code, _, err = run(["train", "smt", str(tmp_path), "--out", str(tmp_path / "m"),
                        "--set", "ibm1_iterations=[1"], capsys)
    _assert_one_line_error(code, err, "not valid YAML")


def test_config_file_that_is_not_utf8(tmp_path, capsys):
    config = tmp_path / "smt.yaml"
    config.write_bytes(b"\xff\xfe")
    code, _, err = run(["train", "smt", str(tmp_path), "--out", str(tmp_path / "m"),
                        "--config", str(config)], capsys)
    _assert_one_line_error(code, err, "smt.yaml", "UTF-8")


def test_empty_reference(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    code, _, err = run(["evaluate", "--ref", str(empty), str(empty)], capsys)
    _assert_one_line_error(code, err, "nothing to score")


def test_lm_train_and_perplexity(tmp_path, capsys):
    import math

    text = tmp_path / "train.txt"
    text.write_text("a b\na b\nb a\n", encoding="utf-8")
    arpa = tmp_path / "lm.arpa"
    code, out, _ = run(["lm", "train", "-i", str(text), "-o", str(arpa), "--order", "1"],
                       capsys)
    assert code == 0 and arpa.is_file()
    # A unigram model: the command must agree with the model's own scoring.
    from mtcompare.smt.lm import NGramLanguageModel

    model = NGramLanguageModel.read_arpa(arpa)
    expected = math.exp(-sum(model.sentence_logprob(line.split())
                             for line in ["a b", "a b", "b a"]) / 9)
    code, out, _ = run(["lm", "ppl", str(arpa), "-i", str(text)], capsys)
    assert code == 0
    assert f"perplexity {expected:.4f}" in out
    assert "3 sentences, 6 words" in out


def test_align_keeps_the_line_count_and_scores_against_gold(tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("la casa ||| the house\nla casa verde ||| the green house\n"
                     "|||\ncasa verde ||| green house\nla ||| \n", encoding="utf-8")
    gold = tmp_path / "gold.txt"
    gold.write_text("0-0 1-1\n0-0 1-2 2-1\n\n0-1 1-0\n\n", encoding="utf-8")
    out = tmp_path / "links.txt"
    code, stdout, err = run(["align", "-i", str(pairs), "-o", str(out), "--iterations",
                             "10", "--gold", str(gold)], capsys)
    assert code == 0
    links = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(links) == 5 and links[2] == "" and links[4] == ""
    for line, (src, tgt) in zip(links, [(2, 2), (3, 3), (0, 0), (2, 2), (1, 0)]):
        for link in line.split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < src and 0 <= j < tgt
    assert "precision" in stdout and "AER" in stdout


def test_align_rejects_a_line_without_separator(tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("la casa ||| the house\nla casa the house\n", encoding="utf-8")
    code, _, err = run(["align", "-i", str(pairs)], capsys)
    _assert_one_line_error(code, err, "pairs.txt:2", "|||")
