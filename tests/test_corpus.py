"""Corpus readers: OSIS verse markup, the SWORD Bibles, text, TSV and TMX files."""

import collections
import logging
import shutil

import pytest

from mtcompare.data import corpus
from mtcompare.data.corpus import (
    Pair,
    osis_to_text,
    read_bible,
    read_parallel_text,
    read_tmx,
    read_tsv,
)
from mtcompare.data.split import bible_split
from mtcompare.errors import MtcError

# ---------------------------------------------------------------------------
# OSIS markup


def test_words_keep_their_text_and_lose_their_strongs_numbers():
    markup = (
        '<w lemma="strong:H7225">In the beginning</w>, '
        '<w lemma="strong:H0430">God</w>.'
    )
    assert osis_to_text(markup) == "In the beginning, God."


def test_a_removed_note_never_glues_words():
    markup = (
        '<w lemma="strong:H0430">God</w><note placement="foot">'
        '<reference type="annotateRef">1:1 </reference>Or, <rdg type="alternate">gods'
        "</rdg> here</note><w>created</w>"
    )
    assert osis_to_text(markup) == "God created"


def test_quotes_and_punctuation_stay_attached_to_their_words():
    markup = (
        '<w>God</w> <w>said</w>, “<w>Let</w> <w>there</w> <w>be</w> <w>light</w>,” '
        "and <w>earth</w>."
    )
    assert osis_to_text(markup) == "God said, “Let there be light,” and earth."


def test_poetry_lines_and_paragraph_breaks_separate_words():
    markup = (
        '<lg sID="a"/><l sID="b"/>Yahweh is my shepherd<l eID="b"/>'
        '<l sID="c"/>I shall lack nothing<l eID="c"/><lb type="x-p"/>Next<lg eID="a"/>'
        '<div sID="d" type="x-p"/>end<div eID="d" type="x-p"/>'
    )
    assert osis_to_text(markup) == "Yahweh is my shepherd I shall lack nothing Next end"


def test_titles_speakers_and_milestones_are_dropped():
    markup = (
        '<chapter n="1" sID="Song.1"/><title type="main">Song</title>'
        '<milestone n="Song" type="x-usfm-h"/><speaker>Beloved</speaker>'
        "Let him kiss me"
    )
    assert osis_to_text(markup) == "Let him kiss me"


def test_canonical_psalm_titles_are_verse_text():
    markup = '<title canonical="true" type="psalm">A Psalm by David.</title> <l/>Yahweh'
    assert osis_to_text(markup) == "A Psalm by David. Yahweh"


def test_added_words_are_kept_and_separated_where_the_module_glued_them():
    markup = (
        '<w>para siempre</w><transChange type="added">es</transChange><w>su</w> '
        '<w>misericordia</w>, <transChange type="added">de allí</transChange>.'
    )
    assert osis_to_text(markup) == "para siempre es su misericordia, de allí."


def test_an_added_enclitic_pronoun_stays_on_its_verb():
    markup = '<w>Júrame</w><transChange type="added">lo</transChange> <w>hoy</w>'
    assert osis_to_text(markup) == "Júramelo hoy"


def test_a_closing_quotation_glued_to_the_next_word_is_separated():
    markup = '<q marker="">“<w>Allow</w> it.”</q><w>Then</w> he did.'
    assert osis_to_text(markup) == "“Allow it.” Then he did."


def test_entities_are_unescaped():
    markup = "<w>Tom</w> &amp; <w>Jerry</w> &lt;3 &#8220;hi&#x201D; &quot;x&apos;"
    assert osis_to_text(markup) == "Tom & Jerry <3 “hi” \"x'"


def test_stray_strongs_tokens_are_dropped():
    assert osis_to_text("In the H7225 beginning G2424 [H0430] God [430] made") == (
        "In the beginning God made"
    )
    assert osis_to_text("HG2 GH3 Hosea") == "HG2 GH3 Hosea"


def test_a_glossary_range_is_dropped_with_everything_inside():
    markup = (
        "Amen. <div sID=\"g1\" type=\"glossary\"/><title>Glossary</title>"
        '<list><item><seg type="keyword">Abba</seg> father</item></list>'
        '<div eID="g1" type="glossary"/>'
    )
    assert osis_to_text(markup) == "Amen."


def test_unbalanced_markup_from_neighbouring_verses_is_tolerated():
    assert osis_to_text('<item type="x-indent-1"><w>Of</w> the sons') == "Of the sons"
    assert osis_to_text("of Bani.</item> </list> Next") == "of Bani. Next"
    assert osis_to_text("<note>a <w>b</w> still in note") == ""


def test_whitespace_is_collapsed():
    assert osis_to_text("  <w>a</w>\n\t  <w>b</w>  ") == "a b"


# ---------------------------------------------------------------------------
# The SWORD Bibles


@pytest.fixture(scope="module")
def bible_pairs() -> list[Pair]:
    """The Bible pairs; the tests that use them skip where the modules are absent."""
    try:
        return read_bible()
    except MtcError as error:
        pytest.skip(f"SWORD Bible modules unavailable: {error}")


def test_bible_split_counts_before_cleaning(bible_pairs):
    counts = collections.Counter(bible_split(pair.ref) for pair in bible_pairs)
    assert counts == {"train": 28_536, "dev": 1_253, "test": 1_288}
    first_test = next(pair for pair in bible_pairs if bible_split(pair.ref) == "test")
    assert first_test.ref == "Genesis 6:1"


def test_bible_text_is_clean(bible_pairs):
    first = bible_pairs[0]
    assert first == Pair(
        "EN el principio crió Dios los cielos y la tierra.",
        "In the beginning, God created the heavens and the earth.",
        "Genesis 1:1",
    )
    by_ref = {pair.ref: pair for pair in bible_pairs}
    assert by_ref["Genesis 1:3"].tgt == (
        "God said, “Let there be light,” and there was light."
    )
    assert by_ref["Revelation of John 22:21"].tgt == (
        "The grace of the Lord Jesus Christ be with all the saints. Amen."
    )
    for pair in bible_pairs:
        assert pair.src and pair.tgt
        assert not any(mark in pair.src + pair.tgt for mark in "<>\x01\x02\x03")


def test_missing_mod2imp_says_what_to_install(monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda program: None)
    with pytest.raises(MtcError, match="apt-get install sword-text-sparv") as error:
        read_bible()
    assert "--src FILE --tgt FILE" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(shutil.which("mod2imp") is None, reason="needs mod2imp")
def test_missing_module_says_what_to_install():
    with pytest.raises(MtcError, match="noSuchModule.*apt-get install"):
        read_bible("noSuchModule", "engWEB2015eb")


# ---------------------------------------------------------------------------
# Line-aligned text files


def test_parallel_text_pairs_lines(tmp_path):
    src, tgt = tmp_path / "a.es", tmp_path / "a.en"
    src.write_bytes("\ufeffhola\r\nadiós\r\n".encode("utf-8"))
    tgt.write_bytes(b"hello\nbye\n")
    pairs = read_parallel_text(src, tgt)
    assert pairs == [Pair("hola", "hello"), Pair("adiós", "bye")]


def test_parallel_text_line_count_mismatch_names_both_files(tmp_path):
    src, tgt = tmp_path / "a.es", tmp_path / "a.en"
    src.write_text("uno\ndos\ntres\n", encoding="utf-8")
    tgt.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(MtcError) as error:
        read_parallel_text(src, tgt)
    message = str(error.value)
    assert str(src) in message and str(tgt) in message
    assert "3 lines" in message and "has 2" in message


def test_parallel_text_invalid_utf8_names_file_and_line(tmp_path):
    src, tgt = tmp_path / "a.es", tmp_path / "a.en"
    src.write_bytes(b"bien\nmal \xff\n")
    tgt.write_text("good\nbad\n", encoding="utf-8")
    with pytest.raises(MtcError, match=f"{src}:2: not valid UTF-8"):
        read_parallel_text(src, tgt)


# ---------------------------------------------------------------------------
# TSV


def test_tsv_reads_two_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes("\ufeffhola\thello\r\ngato\tcat\n".encode("utf-8"))
    assert read_tsv(path) == [Pair("hola", "hello"), Pair("gato", "cat")]


@pytest.mark.parametrize("line, found", [("no tab here", "found 0 TABs"),
                                         ("a\tb\tc", "found 2 TABs")])
def test_tsv_line_without_exactly_one_tab_names_file_and_line(tmp_path, line, found):
    path = tmp_path / "pairs.tsv"
    path.write_text(f"hola\thello\n{line}\n", encoding="utf-8")
    with pytest.raises(MtcError, match=f"{path}:2: .*{found}"):
        read_tsv(path)


# ---------------------------------------------------------------------------
# TMX

TMX = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4">
  <header srclang="en-US" datatype="plaintext" segtype="sentence"/>
  <body>
    <tu>
      <tuv xml:lang="en-US"><seg>The <hi>red</hi> house</seg></tuv>
      <tuv xml:lang="ES"><seg>La casa <bpt i="1">&lt;b&gt;</bpt>roja<ept
        i="1">&lt;/b&gt;</ept></seg></tuv>
    </tu>
    <tu>
      <tuv xml:lang="en"><seg>Only English</seg></tuv>
    </tu>
    <tu>
      <tuv lang="es-MX"><seg>Buenos
        días</seg></tuv>
      <tuv lang="en"><seg>Good morning</seg></tuv>
    </tu>
  </body>
</tmx>
"""


def test_tmx_reads_segments_with_inline_text_and_skips_missing_languages(
    tmp_path, caplog
):
    path = tmp_path / "memory.tmx"
    path.write_text(TMX, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="mtcompare.data.corpus"):
        pairs = read_tmx(path, src_lang="es", tgt_lang="en")
    assert pairs == [
        Pair("La casa roja", "The red house"),
        Pair("Buenos días", "Good morning"),
    ]
    assert "skipped 1 translation units" in caplog.text


def test_malformed_tmx_names_file_and_line(tmp_path):
    path = tmp_path / "broken.tmx"
    path.write_text(
        '<tmx>\n<body>\n<tu><tuv xml:lang="en"><seg>x</tuv>\n</body></tmx>\n',
        encoding="utf-8",
    )
    with pytest.raises(MtcError, match=f"{path}:3: malformed XML"):
        read_tmx(path, "en", "es")


def test_tmx_external_entities_are_refused(tmp_path):
    path = tmp_path / "entities.tmx"
    path.write_text(
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE tmx [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
        '<tmx><body><tu><tuv xml:lang="en"><seg>&secret;</seg></tuv>'
        '<tuv xml:lang="es"><seg>x</seg></tuv></tu></body></tmx>\n',
        encoding="utf-8",
    )
    with pytest.raises(MtcError, match=str(path)):
        read_tmx(path, "en", "es")
