"""HTML to plain text for the index: visible text only, block structure kept as lines."""

from __future__ import annotations

import re
from html import unescape

from selectolax.lexbor import LexborHTMLParser

from indexer.extraction.charsets import decode_bytes

# Elements whose content a reader of the mail never sees.
_INVISIBLE = ["script", "style", "template", "noscript", "head", "object", "iframe", "svg"]
_BLOCKS = (
    "p,div,br,hr,li,dt,dd,tr,h1,h2,h3,h4,h5,h6,blockquote,pre,table,ul,ol,dl,section,article,"
    "header,footer,nav,aside,address,center,form,fieldset,figure,figcaption,caption,main"
)
_CELLS = "td,th"
# A private-use character marks block boundaries in the tree, so that the source's own
# whitespace (which HTML collapses) and the breaks we want survive as different things
# through lexbor's C-level text(); on SpamAssassin's HTML parts that is faster than
# marking tags with a regex before parsing.
_BREAK = "\ue000"
# The HTML tree builder looks through the stack of open elements for every tag, so
# building a tree N elements deep costs O(N^2): 100k nested <div>s take half a minute.
# Browsers cap the depth (Blink at 512); past that we strip tags linearly instead.
_MAX_TREE_DEPTH = 512
_DEPTH_CHECK_FROM = 2 * _MAX_TREE_DEPTH  # fewer tags than this cannot nest that deep
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^<>]*>")
# Void elements and those the parser closes implicitly do not deepen the tree.
_NOT_NESTING = frozenset(
    "area base br col embed hr img input link meta param source track wbr p li td th tr option dt dd".split()
)
_BLOCK_NAMES = frozenset(_BLOCKS.split(","))
_INVISIBLE_START = re.compile(r"<(script|style)\b", re.IGNORECASE)
_INVISIBLE_END = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in ("script", "style")}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document or fragment, entities decoded, one line per block."""
    if not html:
        return ""
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    if html.count("<") > _DEPTH_CHECK_FROM and _nesting_depth(html) > _MAX_TREE_DEPTH:
        return _flat_text(html)
    tree = LexborHTMLParser(html)
    tree.strip_tags(_INVISIBLE)
    root = tree.root
    if root is None:
        return ""
    for node in root.css(_BLOCKS):
        node.insert_before(_BREAK)
        node.insert_after(_BREAK)
    for node in root.css(_CELLS):
        node.insert_after(" ")
    # str.split() collapses every Unicode blank (NBSP included) as HTML rendering does.
    lines = (" ".join(block.split()) for block in root.text(separator="").split(_BREAK))
    return "\n".join(line for line in lines if line)


def _nesting_depth(html: str) -> int:
    """Deepest element nesting the tags promise (an estimate, linear in the input)."""
    depth = deepest = 0
    for match in _TAG.finditer(html):
        if match.group(2).lower() in _NOT_NESTING or match.group(0).endswith("/>"):
            continue
        if match.group(1):
            depth = max(depth - 1, 0)
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def _flat_text(html: str) -> str:
    """Text without building a tree: invisible elements cut, tags replaced, entities decoded."""
    kept: list[str] = []
    position = 0
    while True:
        opening = _INVISIBLE_START.search(html, position)
        if opening is None:
            kept.append(html[position:])
            break
        kept.append(html[position : opening.start()])
        closing = _INVISIBLE_END[opening.group(1).lower()].search(html, opening.end())
        if closing is None:
            break  # an unclosed <script> hides the rest of the document, as in a browser
        position = closing.end()

    def replace(match: re.Match[str]) -> str:
        return _BREAK if match.group(2).lower() in _BLOCK_NAMES else " "

    text = unescape(_TAG.sub(replace, "".join(kept)))
    lines = (" ".join(block.split()) for block in text.split(_BREAK))
    return "\n".join(line for line in lines if line)


def decode_html(data: bytes, charset: str | None) -> tuple[str, str]:
    """Decode HTML bytes; without a MIME charset, a <meta charset> near the top decides."""
    if not charset:
        match = _META_CHARSET.search(data, 0, 4096)
        if match:
            # A wrong meta tag is common and the fallbacks still recover the text,
            # so it is not reported as a defect of the message.
            return decode_bytes(data, match.group(1).decode("ascii"))[0], ""
    return decode_bytes(data, charset)
