"""A report as data — sections of text, tables and images — rendered to one self-contained HTML
file (images embedded, a few lines of script to sort tables) or to Markdown with its images in
a folder beside it. Every string from a run (names, params, tags) is escaped here, once.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Text:
    text: str
    kind: str = "p"  # p | verdict-ok | verdict-bad | note


@dataclass
class Table:
    columns: list[str]
    rows: list[list]
    sortable: bool = False
    highlight: int | None = None  # row index to mark (the best run)
    caption: str = ""


@dataclass
class Image:
    png: bytes
    caption: str
    alt: str = ""

    @property
    def kind(self) -> str:
        """png, or gif for an animation (the bytes say which)."""
        return "gif" if self.png[:4] == b"GIF8" else "png"

    @classmethod
    def from_array(cls, array: np.ndarray, caption: str, alt: str = "") -> Image:
        from PIL import Image as PILImage  # PIL.Image would shadow this module's Image block

        buf = io.BytesIO()
        PILImage.fromarray(array).save(buf, format="PNG")
        return cls(buf.getvalue(), caption, alt or caption)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2
    anchor: str = ""

    def add(self, block) -> Section:
        self.blocks.append(block)
        return self


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        return section

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c8ccd6}
main{max-width:1180px;margin:0 auto;padding:12px 32px 48px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:8px 20px 16px;margin:16px 0}
h2{font-size:19px;border-bottom:1px solid #e1e4ea;padding-bottom:6px}h3{font-size:16px;margin-bottom:6px}
table{border-collapse:collapse;font-size:13px;margin:8px 0;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#eef1f5}th.sortable{cursor:pointer}th.sortable:after{content:" \\2195";color:#8a93a3}
tr.best td{background:#fff6d6;font-weight:600}caption{text-align:left;color:#5b6475;font-size:12px;padding:2px 0}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}figure img{max-width:100%;border:1px solid #e1e4ea;image-rendering:pixelated}
figcaption{font-size:12px;color:#5b6475;max-width:560px}
p.verdict-ok,p.verdict-bad{padding:8px 12px;border-radius:6px}p.verdict-ok{background:#e5f6ea;border-left:4px solid #2e8b57}
p.verdict-bad{background:#fdeaea;border-left:4px solid #c0392b}p.note{color:#5b6475;font-size:13px}
nav a{margin-right:12px;font-size:13px}
"""

SCRIPT = """
function sortTable(th){const t=th.closest('table'),b=t.tBodies[0],i=[...th.parentNode.children].indexOf(th);
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';const rows=[...b.rows];
rows.sort((x,y)=>{const a=x.cells[i].dataset.v??x.cells[i].textContent,c=y.cells[i].dataset.v??y.cells[i].textContent;
const p=parseFloat(a),q=parseFloat(c);const r=(!isNaN(p)&&!isNaN(q))?p-q:a.localeCompare(c);return asc?r:-r});
rows.forEach(r=>b.appendChild(r));}
window.addEventListener('load',()=>{const imgs=[...document.images];
const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
document.body.dataset.imagesTotal=imgs.length;document.body.dataset.imagesLoaded=ok;
imgs.filter(i=>!(i.complete&&i.naturalWidth>0)).forEach(i=>{i.alt='image failed to load: '+i.alt;i.style.outline='2px solid #c0392b'});});
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def to_html(doc: Document) -> str:
    e = html.escape
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(doc.title)}</title>",
           f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style>",
           f"<script>{SCRIPT}</script></head><body>",
           f"<header><h1>{e(doc.title)}</h1><p>{e(doc.subtitle)}</p></header><main>"]
    if len(doc.sections) > 3:
        out.append("<nav>" + "".join(f"<a href='#{_slug(s.anchor or s.title)}'>{e(s.title)}</a>"
                                     for s in doc.sections if s.level == 2) + "</nav>")
    for s in doc.sections:
        out.append(f"<section id='{_slug(s.anchor or s.title)}'><h{s.level}>{e(s.title)}</h{s.level}>")
        for b in s.blocks:
            out.append(_block_html(b))
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out)


def _block_html(b) -> str:
    e = html.escape
    if isinstance(b, Text):
        return f"<p class='{e(b.kind)}'>{e(b.text)}</p>"
    if isinstance(b, Image):
        data = base64.b64encode(b.png).decode()
        width = int.from_bytes(b.png[16:20], "big") if b.kind == "png" else 0  # PNG IHDR: small ones shown at 2x
        size = f" width='{2 * width}'" if 0 < width < 200 else ""
        return (f"<figure><img src='data:image/{b.kind};base64,{data}' alt='{e(b.alt)}'{size}>"
                f"<figcaption>{e(b.caption)}</figcaption></figure>")
    if isinstance(b, Table):
        cls = " class='sortable' onclick='sortTable(this)'" if b.sortable else ""
        head = "".join(f"<th{cls}>{e(str(c))}</th>" for c in b.columns)
        rows = []
        for i, row in enumerate(b.rows):
            cells = "".join(
                f"<td data-v='{e(repr(v)) if isinstance(v, (int, float)) else e(_fmt(v))}'>{e(_fmt(v))}</td>"
                for v in row)
            mark = " class='best'" if b.highlight == i else ""
            rows.append(f"<tr{mark}>{cells}</tr>")
        cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    raise TypeError(type(b))


def to_markdown(doc: Document, path: Path) -> Path:
    """Markdown at `path`, images in `<stem>_files/` beside it."""
    folder = path.with_name(f"{path.stem}_files")
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# {_md_escape(doc.title)}", "", _md_escape(doc.subtitle), ""]
    n = 0
    for s in doc.sections:
        lines += ["#" * s.level + " " + _md_escape(s.title), ""]
        for b in s.blocks:
            if isinstance(b, Text):
                prefix = {"verdict-ok": "**OK** ", "verdict-bad": "**FLAGGED** ", "note": "_"}.get(b.kind, "")
                suffix = "_" if b.kind == "note" else ""
                lines += [prefix + _md_escape(b.text) + suffix, ""]
            elif isinstance(b, Image):
                n += 1
                name = f"{n:03d}-{_slug(b.caption)[:40] or 'figure'}.{b.kind}"
                (folder / name).write_bytes(b.png)
                lines += [f"![{_md_escape(b.alt)}]({folder.name}/{name})", "", f"*{_md_escape(b.caption)}*", ""]
            elif isinstance(b, Table):
                if b.caption:
                    lines += [f"*{_md_escape(b.caption)}*", ""]
                lines.append("| " + " | ".join(_md_escape(str(c)) for c in b.columns) + " |")
                lines.append("|" + "---|" * len(b.columns))
                for i, row in enumerate(b.rows):
                    mark = "**" if b.highlight == i else ""
                    lines.append("| " + " | ".join(f"{mark}{_md_escape(_fmt(v))}{mark}" for v in row) + " |")
                lines.append("")
    path.write_text("\n".join(lines))
    return path


def _md_escape(text: str) -> str:
    """Text that stays text in Markdown: HTML escaped, Markdown's markup characters backslashed,
    one line (a newline in a run name would end a heading or a table row)."""
    text = " ".join(str(text).split("\n")).replace("\\", "\\\\")
    for ch in "`*_[]#|!~":
        text = text.replace(ch, "\\" + ch)
    return html.escape(text, quote=False)
