"""Reading parallel corpora: the SWORD Bibles, plain-text pairs, TSV and TMX.

Every reader returns a list of :class:`Pair` in corpus order. The Bible reader
runs ``mod2imp`` (from Debian's ``libsword-utils``) on two SWORD modules, turns
each verse's OSIS markup into plain text with :func:`osis_to_text` and pairs the
verses that both modules contain under the same reference ("Genesis 1:1").

OSIS to text
    The markup of one verse is a fragment of an OSIS document, and its elements
    need not be balanced: a ``<list>`` or ``<item>`` may open in one verse and
    close in a later one. The fragment is therefore read as a stream of tags and
    text (not with a DOM parser), keeping a stack of open elements. Each element
    has one of four roles:

    * *dropped*: the element and everything in it is not verse text (footnotes
      ``<note>``, headings ``<title>``, speaker labels ``<speaker>``, variant
      readings ``<rdg>``). It leaves a space behind, so the words on either side
      are never glued together.
    * *dropped range*: a ``<div>`` milestone pair (``sID`` ... ``eID``) whose
      type is front matter, an introduction or a glossary; everything between
      the two milestones is dropped. The World English Bible appends its whole
      glossary to Revelation 22:21 this way.
    * *block*: a line or paragraph boundary (``<l>``, ``<lg>``, ``<lb/>``,
      ``<div>``, ``<chapter>``, ...). Its text is kept and it separates words.
    * *inline* (every other element, e.g. ``<w>``, ``<transChange>``, ``<q>``):
      its text is kept and it vanishes without a trace, so ``“<w>Let</w>``
      stays ``“Let``. The one exception: an edge of ``<transChange>`` or
      ``<q>`` that stands between two words with no space becomes a space,
      because both modules leave that space out there (see ``_SOFT_EDGES``).

    Titles marked ``canonical="true"`` are kept: they are the psalm
    superscriptions, which the Hebrew text counts as part of the first verse
    and which the Reina-Valera prints as verse text.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from xml.etree.ElementTree import Element, ParseError

from mtcompare.errors import MtcError
from mtcompare.fileio import decode_lines, read_lines

try:
    from defusedxml import ElementTree as _SafeElementTree
except ImportError:  # the standard parser never fetches external entities either
    from xml.etree import ElementTree as _SafeElementTree

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One source segment and its translation."""

    src: str
    tgt: str
    ref: str | None = None  # "Genesis 1:1" for the Bible; None elsewhere


# ---------------------------------------------------------------------------
# The Bible from SWORD modules

_INSTALL_HINT = (
    "install the Bible modules with "
    "`apt-get install sword-text-sparv sword-text-web libsword-utils`, "
    "or prepare your own files instead: `mtcompare prepare --src FILE --tgt FILE ...`"
)


def read_bible(
    src_module: str = "spaRV1909eb", tgt_module: str = "engWEB2015eb"
) -> list[Pair]:
    """Verse pairs from two SWORD Bible modules, in the source module's order.

    Only references that both modules have, with text on both sides after
    :func:`osis_to_text`, become pairs; verse 0 of a chapter (book and chapter
    headings) and the module and testament headings are not verses.
    """
    started = time.monotonic()
    src_verses = _read_module(src_module)
    tgt_verses = _read_module(tgt_module)
    pairs = [
        Pair(src=src_text, tgt=tgt_verses[ref], ref=ref)
        for ref, src_text in src_verses.items()
        if src_text and tgt_verses.get(ref)
    ]
    logger.info(
        "paired %s verses of %s (%s with text) and %s (%s with text) in %.1f s",
        f"{len(pairs):,}",
        src_module,
        f"{sum(1 for text in src_verses.values() if text):,}",
        tgt_module,
        f"{sum(1 for text in tgt_verses.values() if text):,}",
        time.monotonic() - started,
    )
    return pairs


def _read_module(module: str) -> dict[str, str]:
    """Reference -> plain verse text for every verse of one module."""
    lines = decode_lines(_export_module(module), f"mod2imp {module}")
    verses: dict[str, str] = {}
    for ref, markup in _imp_entries(lines):
        if not _is_verse(ref):
            continue
        if ref in verses:
            logger.warning("%s: %s occurs twice; keeping the first", module, ref)
            continue
        verses[ref] = osis_to_text(markup)
    if not verses:
        raise MtcError(f"mod2imp printed no verses for SWORD module {module}; "
                       + _INSTALL_HINT)
    return verses


def _export_module(module: str) -> bytes:
    """The module in SWORD import format, as printed by ``mod2imp``."""
    program = shutil.which("mod2imp")
    if program is None:
        raise MtcError(f"mod2imp not found (needed to read SWORD module {module}); "
                       + _INSTALL_HINT)
    result = subprocess.run([program, module], capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        first_line = result.stderr.decode("utf-8", "replace").strip().split("\n")[0]
        raise MtcError(f"mod2imp could not export SWORD module {module} "
                       f"({first_line or f'exit status {result.returncode}'}); "
                       + _INSTALL_HINT)
    return result.stdout


def _imp_entries(lines: list[str]) -> Iterator[tuple[str, str]]:
    """(reference, markup) for each ``$$$reference`` entry of an import file."""
    ref: str | None = None
    body: list[str] = []
    for line in lines:
        if line.startswith("$$$"):
            if ref is not None:
                yield ref, "\n".join(body)
            ref, body = line[3:].strip(), []
        elif ref is not None:
            body.append(line)
    if ref is not None:
        yield ref, "\n".join(body)


_VERSE_REF = re.compile(r"^(?P<book>.+) (?P<chapter>\d+):(?P<verse>\d+)$")


def _is_verse(ref: str) -> bool:
    """True for "Book c:v" with v > 0; false for headings and verse 0."""
    match = _VERSE_REF.match(ref)
    return match is not None and int(match["verse"]) > 0


# ---------------------------------------------------------------------------
# OSIS markup to plain text

# The element and all its content are not verse text.
_DROPPED = frozenset({"note", "title", "speaker", "rdg", "catchWord", "figure"})
# Between the sID and eID milestones of a <div> of these types nothing is verse text.
_DROPPED_DIV_TYPES = frozenset(
    {"front", "back", "introduction", "glossary", "preface", "colophon"}
)
# Line, paragraph and section boundaries: their text is kept, they separate words.
_BLOCK = frozenset(
    {"div", "chapter", "verse", "p", "l", "lg", "lb", "list", "item", "head",
     "milestone", "table", "row", "cell", "br"}
)
# Inline wrappers: their text is kept, the tags vanish. So do the tags of any
# element not named anywhere here; the common ones are named only so that their
# tags (most of the markup: every word is a <w>) can be removed in one pass.
_INLINE = ("w", "seg", "name", "hi", "foreign", "divineName", "reference", "index")

# Edges of <transChange> and <q>, marked in the text while it is assembled (the
# marks are control characters that XML forbids, so the markup cannot hold
# them). Both modules sometimes omit the space between these elements and the
# next word: the Reina-Valera 1909 around supplied words ("para
# siempre</w><transChange>es</transChange><w>su"), the WEB after a closing
# quotation ("righteousness.”</q><w>Then"). But the RV1909 also supplies
# enclitic pronouns this way ("Júrame</w><transChange>lo</transChange>").
_SOFT_EDGES = {"transChange": ("\x01", "\x02"), "q": ("\x03", "\x03")}
_SOFT_EDGE = re.compile(r"[\x01-\x03]+")
_SOFT_EDGE_BETWEEN_WORDS = re.compile(r"(?<=[\w”’])[\x01-\x03]+(?=\w)")
_ENCLITIC_START = re.compile(
    r"(?<=\w)\x01(?=(?:(?:me|te|se|nos|os)?(?:lo|la|le|los|las|les)|me|te|se|nos|os)"
    r"\x02)"
)

_ATTRIBUTES = r"(?:\s+[\w:.-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*"
_TAG = re.compile(
    rf"<(?P<close>/?)(?P<name>[A-Za-z_][\w:.-]*)(?P<attributes>{_ATTRIBUTES})"
    r"\s*(?P<empty>/?)>"
    r"|<!--.*?-->|<\?.*?\?>",
    re.DOTALL,
)
_INLINE_TAG = re.compile(rf"</?(?:{'|'.join(_INLINE)}){_ATTRIBUTES}\s*/?>")
_ATTRIBUTE = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_ENTITY = re.compile(r"&(?:#(\d+)|#[xX]([0-9a-fA-F]+)|(amp|lt|gt|quot|apos));")
_NAMED_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# Strong's numbers that leaked into the text: H0430, G2424, [H0430], [430].
_STRONGS_TOKEN = re.compile(r"(?<!\S)(?:[HG]\d{1,5}|\[[HG]?\d{1,5}\])(?!\S)")


def osis_to_text(markup: str) -> str:
    """Plain text of one verse's OSIS markup (see the module docstring for the rules).

    >>> osis_to_text('<w lemma="strong:H0430">God</w><note>a</note><w>made</w>.')
    'God made.'
    """
    pieces: list[str] = []
    open_elements: list[tuple[str, bool]] = []  # (name, drops its content)
    dropping = 0  # how many of the open elements drop their content
    dropped_ranges: set[str] = set()  # sIDs of dropped-range divs now open
    position = 0
    markup = _INLINE_TAG.sub("", markup)
    for tag in _TAG.finditer(markup):
        if not dropping and not dropped_ranges:
            pieces.append(markup[position : tag.start()])
        position = tag.end()
        close, name, attribute_text, empty = tag.groups()
        if name is None:  # a comment or processing instruction
            continue
        if name in _SOFT_EDGES:
            if not dropping and not dropped_ranges:
                pieces.append(_SOFT_EDGES[name][bool(close)])
            continue
        if close:
            dropping -= _close_element(open_elements, name)
        else:
            drops = False
            if name in _DROPPED or name == "div":
                attributes = _attributes(attribute_text)
                _track_dropped_range(name, attributes, dropped_ranges)
                drops = name in _DROPPED and attributes.get("canonical") != "true"
            if not empty:
                open_elements.append((name, drops))
                dropping += drops
        if name in _BLOCK or name in _DROPPED:
            pieces.append(" ")
    if not dropping and not dropped_ranges:
        pieces.append(markup[position:])
    text = _resolve_soft_edges(_unescape("".join(pieces)))
    text = _STRONGS_TOKEN.sub(" ", text)
    return " ".join(text.split())


def _resolve_soft_edges(text: str) -> str:
    """Turn the marked edges of ``<transChange>`` and ``<q>`` into a space or nothing.

    An edge between two letters, or between a closing quotation mark and a
    letter, is a word boundary; any other edge vanishes. A leading enclitic
    pronoun stays attached to the verb before it ("Júrame<transChange>lo" is
    "Júramelo").
    """
    text = _ENCLITIC_START.sub("", text)
    text = _SOFT_EDGE_BETWEEN_WORDS.sub(" ", text)
    return _SOFT_EDGE.sub("", text)


def _close_element(open_elements: list[tuple[str, bool]], name: str) -> int:
    """Pop up to the innermost open ``name``; return how many popped drop content.

    An end tag that nothing opened is ignored; elements left open inside the
    closed one (unbalanced markup) are closed with it.
    """
    for depth in range(len(open_elements) - 1, -1, -1):
        if open_elements[depth][0] == name:
            popped = sum(drops for _, drops in open_elements[depth:])
            del open_elements[depth:]
            return popped
    return 0


def _track_dropped_range(
    name: str, attributes: dict[str, str], ranges: set[str]
) -> None:
    """Open or close a front-matter, introduction or glossary milestone range."""
    if name != "div" or attributes.get("type") not in _DROPPED_DIV_TYPES:
        return
    if "sID" in attributes:
        ranges.add(attributes["sID"])
    elif "eID" in attributes:
        ranges.discard(attributes["eID"])


def _attributes(text: str) -> dict[str, str]:
    """Attribute name -> unescaped value for the attribute part of a start tag."""
    return {
        match[1]: _unescape(match[2] if match[2] is not None else match[3])
        for match in _ATTRIBUTE.finditer(text)
    }


def _unescape(text: str) -> str:
    """Replace XML's five named entities and numeric character references."""
    return _ENTITY.sub(_entity_value, text)


def _entity_value(match: re.Match[str]) -> str:
    decimal, hexadecimal, named = match.groups()
    if named is not None:
        return _NAMED_ENTITIES[named]
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    return chr(code) if 0 < code <= 0x10FFFF else match[0]


# ---------------------------------------------------------------------------
# User corpora


def read_parallel_text(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Pairs from two line-aligned UTF-8 files (line n of one translates line n)."""
    src_lines = read_lines(src_path)
    tgt_lines = read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise MtcError(
            f"{src_path} has {len(src_lines):,} lines but {tgt_path} has "
            f"{len(tgt_lines):,}; line n of one file must translate line n of "
            "the other, so both need the same number of lines"
        )
    logger.info("read %s line pairs from %s and %s", f"{len(src_lines):,}",
                src_path, tgt_path)
    return [Pair(src=src, tgt=tgt) for src, tgt in zip(src_lines, tgt_lines)]


def read_tsv(path: str | Path) -> list[Pair]:
    """Pairs from a UTF-8 file with one ``source<TAB>target`` pair per line."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        tabs = line.count("\t")
        if tabs != 1:
            raise MtcError(
                f"{path}:{number}: expected two columns separated by one TAB, "
                f"found {tabs} TABs; write each pair as source<TAB>target"
            )
        src, tgt = line.split("\t")
        pairs.append(Pair(src=src, tgt=tgt))
    logger.info("read %s pairs from %s", f"{len(pairs):,}", path)
    return pairs


_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# TMX inline elements whose content is the original document's formatting code,
# not text (TMX 1.4b, section 3.7); their tails are text.
_TMX_CODE = frozenset({"bpt", "ept", "it", "ph", "ut"})


def read_tmx(path: str | Path, src_lang: str, tgt_lang: str) -> list[Pair]:
    """Pairs from the translation units of a TMX file.

    Languages match on the primary subtag, ignoring case (``en-US`` is ``en``).
    A unit without a segment in both languages is skipped, with a warning that
    counts them.
    """
    root = _parse_xml(Path(path))
    src_key, tgt_key = _primary_subtag(src_lang), _primary_subtag(tgt_lang)
    pairs = []
    skipped = 0
    for unit in root.iter("tu"):
        segments = _tmx_segments(unit)
        if src_key in segments and tgt_key in segments:
            pairs.append(Pair(src=segments[src_key], tgt=segments[tgt_key]))
        else:
            skipped += 1
    if skipped:
        logger.warning("%s: skipped %s translation units without both %s and %s",
                       path, f"{skipped:,}", src_lang, tgt_lang)
    logger.info("read %s pairs from %s", f"{len(pairs):,}", path)
    return pairs


def _parse_xml(path: Path) -> Element:
    """The root element of an XML file; malformed XML names file and line."""
    try:
        return _SafeElementTree.parse(path).getroot()
    except OSError as error:
        raise MtcError(f"{path}: cannot read ({error.strerror})") from None
    except ParseError as error:
        line, column = error.position
        reason = str(error).split(": line ")[0]
        raise MtcError(f"{path}:{line}: malformed XML at column {column + 1} "
                       f"({reason}); fix the file so that it is well-formed TMX"
                       ) from None
    except ValueError as error:  # defusedxml refuses entity declarations
        raise MtcError(f"{path}: refused to parse ({type(error).__name__}: {error}); "
                       "remove the DTD or entity declarations from the TMX file"
                       ) from None


def _tmx_segments(unit: Element) -> dict[str, str]:
    """Primary language subtag -> segment text, the first ``<tuv>`` of each language."""
    segments: dict[str, str] = {}
    for variant in unit.iter("tuv"):
        lang = variant.get(_XML_LANG) or variant.get("lang")
        segment = variant.find("seg")
        if lang is None or segment is None:
            continue
        text = " ".join(_segment_text(segment).split())
        segments.setdefault(_primary_subtag(lang), text)
    return segments


def _segment_text(element: Element) -> str:
    """Text of a ``<seg>`` with its inline elements' text, skipping native code."""
    parts = [element.text or ""]
    for child in element:
        if child.tag not in _TMX_CODE:
            parts.append(_segment_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _primary_subtag(lang: str) -> str:
    return lang.strip().split("-")[0].split("_")[0].lower()
