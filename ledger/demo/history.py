"""A deterministic, realistic multi-year history for the two seed controllers (SPEC §2, §3).

``generate_history`` simulates Coegi's contacts, consultants, job seekers and students and
Cowrite's users day by day and yields, per simulated day, the producer JSON events (SPEC §3)
the ledger learns that day. Each person is a small generator ("process") that wakes on the
days it acts; monthly billing and the quarterly register refresh are global jobs. Only a few
days of events are ever held in memory, so a million events need a few tens of MB.

Pure and fast: no I/O except ``write_jsonl``; ids, timestamps and choices all derive from
the seed, and timestamps are formatted from integer microseconds (no ``datetime`` per event).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

_S = 1_000_000  # microseconds per second
_H = 3600 * _S
DAY_US = 24 * _H
_EPOCH = date(1970, 1, 1)
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BATCH_TIME = timedelta(hours=23, minutes=30)  # the ledger clock of a day's batch
_CUTOFF_US = 23 * _H + 29 * 60 * _S  # events occur before the batch is recorded
_HHMM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SS = tuple(f"{sec:02d}." for sec in range(60))
# Force UUID version 4 and the RFC 4122 variant on 128 random bits.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
# occurred_at strings have one fixed format, so they sort chronologically.
_BY_TIME = itemgetter("occurred_at")


@dataclass(frozen=True, slots=True)
class DemoPerson:
    controller: str
    email: str  # as first given (not normalised)
    name: str
    phone: str
    account: str | None


@dataclass(frozen=True, slots=True)
class DemoBatch:
    recorded_at: datetime  # tz-aware UTC; the ledger clock at which this batch is appended
    events: list[dict[str, Any]]  # producer JSON dicts; every occurred_at <= recorded_at


# --- people ------------------------------------------------------------------------------

_FIRST = (
    "Åsa", "Anna", "Erik", "Jörgen", "Märta", "Björn", "Göran", "Maja", "Linnéa", "Sören",
    "Karin", "Lars", "Ingrid", "Mats", "Sofia", "Johan", "Elin", "Per", "Ebba", "Nils",
    "Östen", "Agnes", "Håkan", "Ulla", "Måns", "Frida", "Örjan", "Lena", "Stig", "Tove",
    "Ylva", "Gösta", "Malin", "Anders", "Hanna", "Pär", "Siv", "Jonas", "Klara", "Bengt",
    "Astrid", "Olle", "Saga", "Henrik", "Ida", "Åke", "Wilma", "Oskar", "Signe", "Lennart",
    "Amira", "Ali", "Zeynep", "Mehmet", "Leila", "Dragan", "Aino", "Yusuf", "Noor", "Milan",
)
_LAST = (
    "Öberg", "Ängström", "Åberg", "Söderström", "Lindqvist", "Björk", "Löfgren", "Sjögren",
    "Nyström", "Håkansson", "Bäckström", "Jönsson", "Svensson", "Karlsson", "Ström",
    "Näslund", "Åkesson", "Holm", "Sandberg", "Ekström", "Lundgren", "Hägglund", "Wallin",
    "Öhman", "Forsberg", "Sundström", "Berglöf", "Dahl", "Fröberg", "Granström", "Höglund",
    "Isaksson", "Jäderberg", "Kjellén", "Lööf", "Magnusson", "Nordén", "Pålsson",
    "Rönnqvist", "Sjöberg", "Törnqvist", "Udén", "Västberg", "Wikström", "Åström", "Ödman",
    "Ahmadi", "Yilmaz", "Nikolić", "Virtanen", "Hussein", "Andersson", "Johansson", "Persson",
    "Eriksson", "Mäkinen", "Grönlund", "Lindström", "Hedlund", "Blom",
)
_FOLD = str.maketrans("åäöéüćÅÄÖÉÜĆ", "aaoeucAAOEUC")
_DOMAINS = ("example.se",) * 5 + ("example.com",) * 3 + ("example.org",)


def _email_local(first: str, last: str, style: float) -> str:
    f, ln = first.translate(_FOLD).lower(), last.translate(_FOLD).lower()
    if style < 0.65:
        return f"{f}.{ln}"
    if style < 0.8:
        return f"{f[0]}.{ln}"
    if style < 0.9:
        return f"{f}_{ln}"
    return f"{ln}.{f}"


# (controller, email, name, phone, account): DemoPerson's fields as a plain tuple, which the
# cyclic GC stops scanning, unlike objects; tens of thousands wait for their sign-up day.
_Person = tuple[str, str, str, str, "str | None"]


def demo_people(subjects: int, seed: int) -> list[DemoPerson]:
    """The persons of ``generate_history(subjects, seed)``, in the same order.

    E-mails and phones are unique; names are unique-ish (first, optional middle, last).
    """
    return [DemoPerson(*p) for p in _people(subjects, seed)]


def _people(subjects: int, seed: int) -> list[_Person]:
    rng = random.Random(seed)
    r = rng.random
    seen: dict[str, int] = {}
    width = max(6, len(str(subjects)) + 1)
    # i -> (off + i * mult) mod 10^k is a bijection (mult is coprime to 10): unique numbers.
    phone_off, acc_off = rng.randrange(10**7), rng.randrange(10**width)
    people: list[_Person] = []
    for i in range(subjects):
        controller = "cowrite" if r() < 0.55 else "coegi"
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        middle = rng.choice(_FIRST) if r() < 0.3 else first
        name = f"{first} {last}" if middle == first else f"{first} {middle} {last}"
        local = _email_local(first, last, r())
        n = seen.get(local, 0) + 1
        seen[local] = n
        if n > 1:  # bases never end in a digit, so a numeric suffix keeps them unique
            local = f"{local}{n}"
        domain = rng.choice(_DOMAINS)
        if r() < 0.3:  # people type their address in all sorts of ways
            local = ".".join(p.capitalize() for p in local.split("."))
            domain = "Example." + domain.split(".")[1].upper() if r() < 0.2 else domain
        d = f"{(phone_off + i * 7_654_321) % 10**7:07d}"
        phone = f"+46 7{rng.choice('02369')} {d[:3]} {d[3:5]} {d[5:]}"
        account = None
        if controller == "cowrite":
            account = f"cw-{(acc_off + i * 7919) % 10**width:0{width}d}"
        people.append((controller, f"{local}@{domain}", name, phone, account))
    return people


# --- organisations, places, staff --------------------------------------------------------

# Matching companies of Arbetsförmedlingen's "Stöd och Matchning" (fictional) and their slugs.
_MATCHING = (
    ("Jobbvägen Matchning AB", "jobbvagen"),
    ("Rusta & Matcha Norr AB", "rustanorr"),
    ("Karriärbron AB", "karriarbron"),
    ("Stegvis Kompetens AB", "stegvis"),
    ("Nya Jobb Väst AB", "nyajobbvast"),
    ("Framåt Coaching AB", "framat"),
    ("Matchia Sverige AB", "matchia"),
    ("Omställningsfonden Exempel", "omstallning"),
)
_COEGI_GROUP = (
    "Coegi Sverige AB", "Coegi Konsult Göteborg AB", "Coegi Talent AB", "Coegi Digital AB",
)
_COEGI_PROCESSORS = ("Molnhallen IT AB", "Utskick Nordic AB", "Kundregistret Exempel AB")
_CUSTOMERS = (
    "Volvera Fordon AB", "Kustbanken AB", "Norrskog Industri AB", "Västlänk Logistik AB",
    "Göta Energi AB", "Mälarkraft AB", "Hallands Medtech AB", "Öresund Data AB",
    "Skaraborgs Verkstad AB", "Region Exempelland", "Exempelstads kommun", "Fjällbo Bygg AB",
    "Svea Försäkring Exempel AB", "Lapplands Gruv AB", "Bohus Marin AB", "Dalarna Trä AB",
)
_SUPPLIERS = (
    "Kontorsvaror Syd AB", "Tolkservice Norden AB", "Konferensgården Exempel AB",
    "Rekryteringstest AB", "Städbolaget Glans AB", "Tryckeriet i Mölndal AB",
)
_PARTNERS = (
    "Chalmers Exempelinstitut", "Handelskammaren Exempel", "Teknikcollege Väst",
    "IT-Forum Exempel",
)
_STREETS = (
    "Storgatan", "Kungsgatan", "Drottninggatan", "Skolvägen", "Björkvägen", "Ringvägen",
    "Järnvägsgatan", "Hamngatan", "Sjövägen", "Ängsvägen", "Kyrkogatan", "Lövstigen",
)
_CITIES = (
    ("411 38", "Göteborg"), ("113 40", "Stockholm"), ("211 20", "Malmö"), ("753 20", "Uppsala"),
    ("582 24", "Linköping"), ("903 26", "Umeå"), ("702 10", "Örebro"), ("791 71", "Falun"),
    ("431 37", "Mölndal"), ("352 30", "Växjö"), ("971 86", "Luleå"), ("721 30", "Västerås"),
)
_TITLES = (
    "inköpschef", "VD", "HR-ansvarig", "projektledare", "ekonomichef", "IT-chef",
    "styrelseledamot",
)
_COEGI_STAFF = ("staff:1017", "staff:1023", "staff:1042", "staff:1088", "staff:1104", "staff:1131")
_CW_STAFF = ("staff:cw-03", "staff:cw-07", "staff:cw-11")


def _org_number(name: str) -> str:
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return f"556{h % 1000:03d}-{h // 1000 % 10000:04d}"


# --- notices: the exact texts consent is given to (SPEC §3 ConsentGiven) -----------------

# notice_id -> ((effective from, version), ...); older versions were shown before 2021.
_NOTICE_SCHEDULE: dict[str, tuple[tuple[date, str], ...]] = {
    "coegi-newsletter": (
        (date(2018, 5, 25), "1"), (date(2022, 3, 1), "2"), (date(2024, 10, 1), "3"),
    ),
    "coegi-privacy": ((date(2018, 5, 25), "1"), (date(2023, 5, 15), "2")),
    "coegi-cookies": ((date(2019, 1, 1), "1"), (date(2022, 9, 1), "2"), (date(2025, 2, 1), "3")),
    "cw-newsletter-terms": (
        (date(2020, 2, 1), "1"), (date(2022, 6, 1), "2"), (date(2025, 1, 15), "3"),
    ),
    "cw-coach-sharing": ((date(2020, 2, 1), "1"), (date(2023, 8, 21), "2")),
    "cw-cookies": ((date(2020, 2, 1), "1"), (date(2023, 1, 10), "2")),
}
# The exact notice texts, one paragraph each under a "notice_id version language" line;
# wrapped lines are joined with single spaces before hashing.
_NOTICE_SOURCE = """
coegi-newsletter 1 sv
Genom att klicka på ”Skicka” samtycker du till att Coegi använder ditt namn och din e-postadress
för att skicka nyhetsbrev och inbjudningar. Du kan när som helst avsluta prenumerationen via
länken i varje utskick.

coegi-newsletter 1 en
By clicking “Send” you agree that Coegi uses your name and e-mail address to send newsletters
and invitations. You can unsubscribe at any time via the link in every mailing.

coegi-newsletter 2 sv
Genom att klicka på ”Skicka” samtycker du till att Coegi skickar nyhetsbrev, erbjudanden och
inbjudningar till dig via e-post, SMS, app eller post. Du kan när som helst tacka nej via länken
i utskicket eller under ”Mina Sidor”.

coegi-newsletter 2 en
By clicking “Send” you agree that Coegi sends you newsletters, offers and invitations by e-mail,
SMS, app or post. You can opt out at any time via the link in the mailing or under “My Pages”.

coegi-newsletter 3 sv
Genom att klicka på ”Skicka” samtycker du till att Coegi skickar nyhetsbrev, erbjudanden och
inbjudningar via e-post, SMS, app eller post. Samtycket gäller tills du avslutar
prenumerationen, vilket du kan göra när som helst via länken i utskicket, under ”Mina Sidor”
eller genom att kontakta oss. Uppgifterna gallras senast tre år efter din senaste aktivitet.

coegi-newsletter 3 en
By clicking “Send” you agree that Coegi sends newsletters, offers and invitations by e-mail,
SMS, app or post. Your consent applies until you unsubscribe, which you can do at any time via
the link in the mailing, under “My Pages” or by contacting us. The data is erased at the latest
three years after your last activity.

coegi-privacy 1 sv
Genom att klicka på ”Skicka” samtycker du till att dina lämnade personuppgifter, såsom namn,
telefonnummer och e-postadress, får användas för att anpassa erbjudanden och marknadsföring till
dig (segmentering).

coegi-privacy 1 en
By clicking “Send” you agree that the personal data you provide, such as name, phone number and
e-mail address, may be used to tailor offers and marketing to you (segmentation).

coegi-privacy 2 sv
Genom att klicka på ”Skicka” samtycker du till att Coegi lagrar och analyserar uppgifter om hur
du använder våra tjänster för att ta fram erbjudanden och riktad marknadsföring, där
segmentering och profilering kan användas. Du kan när som helst återkalla ditt samtycke.

coegi-privacy 2 en
By clicking “Send” you agree that Coegi stores and analyses data about how you use our services
to prepare offers and targeted marketing, which may involve segmentation and profiling. You can
withdraw your consent at any time.

coegi-cookies 1 sv
Vi använder cookies för att webbplatsen ska fungera och för att förstå hur den används.

coegi-cookies 1 en
We use cookies to make the website work and to understand how it is used.

coegi-cookies 2 sv
Vi använder nödvändiga cookies samt, med ditt samtycke, analyscookies för statistik på
aggregerad nivå, även från tredje part.

coegi-cookies 2 en
We use necessary cookies and, with your consent, analytics cookies for aggregated statistics,
including from third parties.

coegi-cookies 3 sv
Vi använder nödvändiga cookies samt, med ditt samtycke, analyscookies för statistik på
aggregerad nivå. Analysdata behandlas inom EU/EES och sparas i högst 13 månader.

coegi-cookies 3 en
We use necessary cookies and, with your consent, analytics cookies for aggregated statistics.
Analytics data is processed within the EU/EEA and kept for at most 13 months.

cw-newsletter-terms 1 sv
Ja tack, jag vill få Cowrites nyhetsbrev med tips och erbjudanden via e-post.

cw-newsletter-terms 1 en
Yes please, I want Cowrite's newsletter with tips and offers by e-mail.

cw-newsletter-terms 2 sv
Ja tack, jag vill få Cowrites nyhetsbrev med skrivtips och erbjudanden via e-post. Du kan
avregistrera dig när som helst via länken i nyhetsbrevet eller i dina kontoinställningar.

cw-newsletter-terms 2 en
Yes please, I want Cowrite's newsletter with writing tips and offers by e-mail. You can
unsubscribe at any time via the link in the newsletter or in your account settings.

cw-newsletter-terms 3 sv
Ja tack, jag vill få Cowrites nyhetsbrev med skrivtips och erbjudanden via e-post. Du kan
avregistrera dig när som helst. Om ditt konto inte används på 6 månader raderas det, och då
upphör även utskicken.

cw-newsletter-terms 3 en
Yes please, I want Cowrite's newsletter with writing tips and offers by e-mail. You can
unsubscribe at any time. If your account is not used for 6 months it is deleted, and the
mailings stop.

cw-coach-sharing 1 sv
Jag samtycker till att mina texter och uppgifter delas med min jobbcoach/handledare vars
e-postadress jag anger.

cw-coach-sharing 1 en
I agree that my texts and details are shared with my job coach/supervisor whose e-mail address I
enter.

cw-coach-sharing 2 sv
Jag samtycker till att mina texter och uppgifter delas med min jobbcoach/handledare vars
e-postadress jag anger, och att min användning faktureras det matchningsföretag jobbcoachen
tillhör.

cw-coach-sharing 2 en
I agree that my texts and details are shared with my job coach/supervisor whose e-mail address I
enter, and that my usage is invoiced to the matching company the coach belongs to.

cw-cookies 1 sv
Cowrite använder cookies för att webbplatsen ska fungera och för statistik över hur tjänsten
används.

cw-cookies 1 en
Cowrite uses cookies to make the website work and for statistics on how the service is used.

cw-cookies 2 sv
Cowrite använder cookies och taggar för att webbplatsen ska fungera, för analytisk information
om användningen och för att kunna rikta relevanta nyheter och erbjudanden till dig.

cw-cookies 2 en
Cowrite uses cookies and tags to make the website work, for analytical information about usage
and to target relevant news and offers to you.
"""


def _parse_notices(source: str) -> dict[tuple[str, str, str], str]:
    notices = {}
    for paragraph in source.strip().split("\n\n"):
        head, *lines = paragraph.splitlines()
        notice_id, version, language = head.split()
        notices[(notice_id, version, language)] = " ".join(lines)
    return notices


_NOTICE_TEXTS = _parse_notices(_NOTICE_SOURCE)
NOTICE_SHA256: dict[tuple[str, str, str], str] = {
    k: hashlib.sha256(v.encode()).hexdigest() for k, v in _NOTICE_TEXTS.items()
}


@dataclass(frozen=True, slots=True)
class DemoNotice:
    """A notice text of the demo, as ``ledger notice publish`` registers it."""

    controller: str
    notice_id: str
    version: str
    language: str
    text: str
    effective: date  # first shown on this day


def demo_notices() -> list[DemoNotice]:
    """Every notice version of both controllers, in the order they took effect (the demo
    publishes them before the consents that name them)."""
    notices = []
    for (notice_id, version, language), text in _NOTICE_TEXTS.items():
        controller = "coegi" if notice_id.startswith("coegi-") else "cowrite"
        effective = dict((v, d) for d, v in _NOTICE_SCHEDULE[notice_id])[version]
        notices.append(DemoNotice(controller, notice_id, version, language, text, effective))
    return sorted(notices, key=lambda n: (n.effective, n.notice_id, n.version, n.language))


_FORM_BUTTON = {"sv": "Skicka", "en": "Send"}
_BANNER_BUTTON = {"sv": "Godkänn alla", "en": "Accept all"}

_CW_FEATURES = (
    "text_generator", "text_generator", "cv_builder", "cv_builder", "cover_letter",
    "cover_letter", "cover_letter", "proofreading", "linkedin_profile", "export_pdf",
)
_CW_BILLABLE = frozenset({"text_generator", "cv_builder", "cover_letter", "linkedin_profile"})
_CW_LOGIN = ("password", "password", "password", "magic_link", "google", "bankid")
_CW_RIGHTS = ("access", "access", "portability", "rectification", "restriction")
_COEGI_RIGHTS = ("access", "access", "access", "portability", "rectification", "restriction")
_CONTACTS = frozenset({"customer_contact", "supplier_contact", "partner_contact"})
_COEGI_RELATIONS = (
    ("customer_contact", 30), ("supplier_contact", 9), ("partner_contact", 7),
    ("consultant", 14), ("job_seeker", 27), ("student", 13),
)
_COEGI_WEB = ("webinar", "event_signup", "whitepaper_download", "case_study", "contact_form")
_COEGI_KARRIAR = (
    "job_search", "job_search", "application", "cv_upload", "job_alert_click", "profile_edit",
)
_COEGI_STUDENT = ("thesis_application", "event_signup", "mentor_meeting", "job_search")
_CHANNELS = ("email",) * 14 + ("sms",) * 3 + ("app",) * 2 + ("post",)


# --- simulation --------------------------------------------------------------------------


class _Subj:
    """A simulated person's state as seen by the producing systems."""

    __slots__ = (
        "account", "account_id", "app", "coach_email", "consents", "ctl", "email", "en", "erased",
        "has_phone", "last_act", "login", "name", "org", "phone", "relation", "subs",
    )

    def __init__(self, person: _Person, use_account: bool) -> None:
        self.ctl, self.email, self.name, self.phone, self.account_id = person
        self.account = self.account_id if use_account else None  # the subject identifier
        self.relation = "user"
        self.org: str = ""  # billed party / employer / current customer
        self.coach_email: str = ""
        self.app = use_account
        self.last_act = 0
        self.erased = False
        # Tuples rather than list/set: tuples of strings drop out of the cyclic GC's sight.
        self.subs: tuple[tuple[str, str], ...] = ()  # (list, channel) currently subscribed
        self.consents: tuple[str, ...] = ()  # purposes currently consented to
        self.has_phone = False
        self.en = False
        self.login = "password"

    def grant(self, purpose: str) -> None:
        if purpose not in self.consents:
            self.consents += (purpose,)

    def revoke(self, purpose: str) -> None:
        self.consents = tuple(c for c in self.consents if c != purpose)


class _Sim:
    def __init__(self, seed: int, start: date, end: date) -> None:
        self.rng = random.Random(seed * 7919 + 1)  # behaviour; demo_people has its own stream
        self._random = self.rng.random  # bound once: called several times per event
        self._bits = random.Random(seed * 104_729 + 2).getrandbits  # event ids
        self.d0 = (start - _EPOCH).days
        self.d1 = (end - _EPOCH).days
        # Events can be posted a few weeks ahead (request closures, late billing exports).
        self._daystr = [
            f"{(_EPOCH + timedelta(days=d)).isoformat()}T" for d in range(self.d0, self.d1 + 80)
        ]
        self.day = self.d0
        self.day_us = self.d0 * DAY_US
        self.today: list[dict[str, Any]] = []  # learnt today (the common case)
        self.rec: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)  # learnt later
        self.cw_usage: dict[_Subj, int] = {}  # billable documents this month
        self.coegi_hours: dict[tuple[_Subj, str], int] = {}  # consultant hours per customer
        self.registry: list[_Subj] = []  # Coegi's CRM, refreshed from public registers
        self.starts: defaultdict[int, list[_Person]] = defaultdict(list)  # day -> sign-ups
        self.wake: defaultdict[int, list[Iterator[int]]] = defaultdict(list)  # day -> processes
        self.req_no = {"coegi": 0, "cowrite": 0}
        self.notice_days = {
            nid: tuple(((d - _EPOCH).days, v) for d, v in sched)
            for nid, sched in _NOTICE_SCHEDULE.items()
        }

    # Time helpers: integer microseconds since the Unix epoch.
    def at(self, lo_h: float, hi_h: float) -> int:
        return self.day_us + int((lo_h + self._random() * (hi_h - lo_h)) * _H)

    def on(self, day: int, lo_h: float, hi_h: float) -> int:
        return day * DAY_US + int((lo_h + self._random() * (hi_h - lo_h)) * _H)

    def ev(
        self,
        s: _Subj,
        typ: str,
        t: int,
        source: str,
        actor: str,
        body: dict[str, Any] | None = None,
        pii: dict[str, str] | None = None,
        late: int = 0,
    ) -> None:
        """Build one producer event and file it under the day the ledger learns it."""
        # Hot path (once per event): plain arithmetic and string building only.
        d, r = divmod(t, DAY_US)
        r = min(r, _CUTOFF_US)
        m, us = divmod(r, 60 * _S)
        h = "%032x" % (self._bits(128) & _UUID_CLEAR | _UUID_SET)
        if s.account is not None:
            subject = {"account": s.account}
        else:
            # Upstream apps pass the address as typed; the ledger normalises it.
            x = self._random()
            email = s.email if x < 0.9 else s.email.lower() if x < 0.96 else f" {s.email.upper()} "
            subject = {"email": email}
        event = {
            "type": typ,
            "event_id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            "controller": s.ctl,
            "occurred_at": f"{self._daystr[d - self.d0]}{_HHMM[m]}{_SS[us // _S]}{us % _S:06d}Z",
            "source": source,
            "actor": actor,
            "subject": subject,
        }
        if body:
            event.update(body)
        if pii is not None:
            event["pii"] = pii
        if late == 0 and d == self.day:
            self.today.append(event)
        elif d + late > self.day:
            self.rec[d + late].append(event)
        else:
            raise AssertionError(f"{typ} filed into the past")

    def consent(
        self, s: _Subj, t: int, purpose: str, notice_id: str, channel: str, banner: bool = False
    ) -> None:
        version = "1"
        for from_day, v in self.notice_days[notice_id]:
            if from_day <= t // DAY_US:
                version = v
        lang = "en" if s.en else "sv"
        ui = (_BANNER_BUTTON if banner else _FORM_BUTTON)[lang]
        body = {
            "purpose": purpose,
            "notice_id": notice_id,
            "notice_version": version,
            "notice_sha256": NOTICE_SHA256[(notice_id, version, lang)],
            "language": lang,
            "ui_action": ui,
            "channel": channel,
        }
        self.ev(s, "ConsentGiven", t, channel, "subject", body)
        s.grant(purpose)

    def request(
        self, s: _Subj, t: int, right: str, source: str, actor: str, scope: str | None = None
    ) -> str:
        """A rights request; all but erasure are answered by staff within the month."""
        self.req_no[s.ctl] += 1
        year = (_EPOCH + timedelta(days=t // DAY_US)).year
        rid = f"{'CG' if s.ctl == 'coegi' else 'CW'}-RR-{year}-{self.req_no[s.ctl]:05d}"
        body: dict[str, Any] = {"request_id": rid, "right": right}
        if scope:
            body["scope"] = scope
        self.ev(s, "RightsRequested", t, source, actor, body)
        if right == "objection":
            self.ev(s, "ObjectionRaised", t + 1, source, actor,
                    {"purpose": scope or "marketing", "via": "email"})
        if right == "erasure":
            s.erased = True  # the ledger pseudonymises and later erases; producers stop
            return rid
        staff = self.rng.choice(_COEGI_STAFF if s.ctl == "coegi" else _CW_STAFF)
        close = t // DAY_US + 2 + int(self.rng.random() * 24)
        tc = self.on(close, 7, 15)
        if right == "rectification":
            self.ev(s, "PersonalDataUpdated", tc - 600 * _S, "support", staff,
                    {"fields": ["address"], "origin": "staff"}, {"address": self.address()})
        outcome = "fulfilled" if self.rng.random() < 0.9 else "partially_fulfilled"
        if right == "restriction" and self.rng.random() < 0.2:
            outcome = "refused"
        self.ev(s, "RightsRequestClosed", tc, "support", staff,
                {"request_id": rid, "outcome": outcome})
        return rid

    def address(self) -> str:
        rng = self.rng
        pc, city = rng.choice(_CITIES)
        return f"{rng.choice(_STREETS)} {1 + int(rng.random() * 60)}, {pc} {city}"

    def subscribe(self, s: _Subj, t: int, lst: str, channel: str, via: str) -> int:
        """Newsletter signup: the consent click ("Skicka"), then the list subscription."""
        if lst not in {x for x, _ in s.subs}:
            nid = "coegi-newsletter" if s.ctl == "coegi" else "cw-newsletter-terms"
            self.consent(s, t, "newsletter", nid, via)
            t += int((2 + self.rng.random() * 20) * _S)
        self.ev(s, "NewsletterSubscribed", t, via if via in ("web", "app") else "newsletter",
                "subject", {"list": lst, "channel": channel})
        s.subs += ((lst, channel),)
        return t

    def unsubscribe(self, s: _Subj, t: int) -> None:
        rng = self.rng
        x = rng.random()
        if x < 0.6:  # the unsubscribe link in an e-mail/SMS: that list on that channel
            i = int(rng.random() * len(s.subs))
            lst, ch = s.subs[i]
            s.subs = s.subs[:i] + s.subs[i + 1 :]
            self.ev(s, "Unsubscribed", t, "newsletter", "subject",
                    {"list": lst, "channel": ch, "via": "link"})
            return
        s.subs = ()
        if x < 0.9:  # "Mina Sidor" / account settings: all marketing
            src = "app" if s.app else "web"
            body = {"list": "*", "channel": "*", "via": "settings"}
            if s.ctl == "cowrite":
                body = {"list": "cowrite-nyheter", "channel": "email", "via": "settings"}
            self.ev(s, "Unsubscribed", t, src, "subject", body)
        else:
            staff = rng.choice(_COEGI_STAFF if s.ctl == "coegi" else _CW_STAFF)
            self.ev(s, "Unsubscribed", t, "support", staff,
                    {"list": "*", "channel": "*", "via": "support"})

    def run_day(self, day: int) -> list[dict[str, Any]]:
        """Run everything that happens on ``day``; return what the ledger learns that day."""
        self.day = day
        self.day_us = day * DAY_US
        current = _EPOCH + timedelta(days=day)
        if current.day == 1 and day > self.d0:
            self.billing()
        if current.day == 15 and current.month % 3 == 0:
            self.registervard()
        wake = self.wake
        for p in self.starts.pop(day, ()):
            if p[0] == "cowrite":
                s = _Subj(p, self.rng.random() < 0.3)  # app users are known by account id
                wake[day].append(_cowrite_user(self, s))
            else:
                s = _Subj(p, False)
                s.relation = _pick_relation(self.rng.random())
                wake[day].append(_coegi_person(self, s))
        for proc in wake.pop(day, ()):
            nxt = next(proc, None)
            if nxt is None:
                continue
            if nxt <= day:
                raise AssertionError(f"process woke for day {nxt} on day {day}")
            if nxt < self.d1:
                wake[nxt].append(proc)
        batch = self.today
        self.today = []
        batch.extend(self.rec.pop(day, ()))
        batch.sort(key=_BY_TIME)
        return batch

    # Global jobs -------------------------------------------------------------------------

    def billing(self) -> None:
        """Monthly billing run on the 1st for last month's usage; the export reaches the
        ledger a few days later (late arrivals)."""
        prev = _EPOCH + timedelta(days=self.day - 1)
        ym = f"{prev.year}{prev.month:02d}"
        rng = self.rng
        usage, self.cw_usage = self.cw_usage, {}
        for s, units in usage.items():
            late = 2 + int(rng.random() * 4)
            org_no = next(i for i, (n, _) in enumerate(_MATCHING) if n == s.org)
            body = {
                "billed_party": s.org, "units": units, "unit": "document",
                "amount_minor": units * 4900, "currency": "SEK",
                "invoice_ref": f"CW-{ym}-{org_no + 1:03d}",
            }
            self.ev(s, "InvoiceUsageRecorded", self.at(2, 4), "billing", "system:billing",
                    body, {"name": s.name}, late)
        hours, self.coegi_hours = self.coegi_hours, {}
        for n, ((s, customer), h) in enumerate(hours.items(), 1):
            rate = 85_000 + 5_000 * (_CUSTOMERS.index(customer) % 8)  # öre per hour
            body = {
                "billed_party": customer, "units": h, "unit": "hour",
                "amount_minor": h * rate, "currency": "SEK",
                "invoice_ref": f"CG-{ym}-{n:04d}",
            }
            self.ev(s, "InvoiceUsageRecorded", self.at(3, 5), "billing", "system:billing",
                    body, {"name": s.name}, 1 + int(rng.random() * 5))

    def registervard(self) -> None:
        """Quarterly refresh of Coegi's CRM from SPAR and Bolagsverket ("god registervård").
        Only people still in a relationship (active within two years) are refreshed."""
        rng = self.rng
        horizon = self.day - 730
        keep: list[_Subj] = []
        for s in self.registry:
            if s.erased or s.last_act < horizon:
                continue
            keep.append(s)
            x = rng.random()
            if x < 0.04:
                self.ev(s, "PersonalDataUpdated", self.at(2, 3), "crm", "system:registervard",
                        {"fields": ["address"], "origin": "register:SPAR"},
                        {"address": self.address()})
            elif x < 0.08 and s.relation in _CONTACTS:
                org = rng.choice(_CUSTOMERS)
                body = {"fields": ["employer", "org_number", "title"],
                        "origin": "register:Bolagsverket"}
                pii = {"employer": org, "org_number": _org_number(org),
                       "title": rng.choice(_TITLES)}
                self.ev(s, "PersonalDataUpdated", self.at(2, 3), "crm", "system:registervard",
                        body, pii)
        self.registry = keep


# --- Cowrite ----------------------------------------------------------------------------


def _cw_session(sim: _Sim, s: _Subj, t: int) -> int:
    rng = sim.rng
    r = rng.random
    src = "app" if s.app else "web"
    if r() < 0.7:  # otherwise a remembered session
        sim.ev(s, "LoggedIn", t, src, "subject", {"app": "cowrite", "method": s.login})
        t += int((10 + r() * 120) * _S)
    docs = 0
    for _ in range(1 + int(r() * r() * 4)):
        f = _CW_FEATURES[int(r() * 10)]
        late = 1 if s.app and r() < 0.04 else 0  # offline app usage synced the next day
        sim.ev(s, "ServiceUsed", t, src, "subject", {"app": "cowrite", "feature": f}, late=late)
        if f in _CW_BILLABLE:
            docs += 1
        t += int((60 + r() * 600) * _S)
    if s.coach_email:
        if docs:
            sim.cw_usage[s] = sim.cw_usage.get(s, 0) + docs
        if r() < 0.15:  # the user sends a finished text to the coach
            sim.ev(s, "ServiceUsed", t, src, "subject",
                   {"app": "cowrite", "feature": "share_with_coach"})
            sim.ev(s, "DataShared", t + 2 * _S, src, "subject",
                   {"recipient_kind": "coach", "recipient": s.org, "basis": "consent"},
                   {"coach_email": s.coach_email})
            t += 5 * _S
    s.last_act = sim.day
    return t


def _cw_coach(sim: _Sim, s: _Subj, t: int) -> int:
    """A job seeker in "Stöd och Matchning" enters the coach's e-mail address."""
    rng = sim.rng
    org, slug = rng.choice(_MATCHING)
    first, last = rng.choice(_FIRST[:30]), rng.choice(_LAST[:20])
    s.org = org
    local = f"{first}.{last}".translate(_FOLD).lower()
    s.coach_email = f"{local}@{slug}.example.org"
    src = "app" if s.app else "web"
    sim.consent(s, t, "coach_sharing", "cw-coach-sharing", src)
    t += int((1 + rng.random() * 5) * _S)
    sim.ev(s, "DataShared", t, src, "subject",
           {"recipient_kind": "coach", "recipient": org, "basis": "consent"},
           {"coach_email": s.coach_email})
    return t + 30 * _S


def _cowrite_user(sim: _Sim, s: _Subj) -> Iterator[int]:
    rng = sim.rng
    r = rng.random
    s.en = r() < 0.06
    s.login = rng.choice(_CW_LOGIN)
    src = "app" if s.app else "web"
    job_seeker = r() < 0.45
    registered = False
    while True:
        # Registration (or re-registration after the old account was deleted).
        t = sim.at(5, 21)
        pii = {"name": s.name, "email": s.email}
        if r() < 0.6 or s.has_phone:
            pii["phone"] = s.phone
            s.has_phone = True
        sim.ev(s, "SubjectRegistered", t, src, "subject",
               {"relation": "user", "account_ref": s.account_id}, pii)
        t += int((5 + r() * 60) * _S)
        if r() < 0.45:
            sim.consent(s, t, "analytics", "cw-cookies", src, banner=True)
            t += int((3 + r() * 30) * _S)
        if not registered and r() < 0.35:
            t = sim.subscribe(s, t, "cowrite-nyheter", "email", src) + 20 * _S
        if job_seeker and not s.coach_email and r() < 0.7:
            t = _cw_coach(sim, s, t)
        _cw_session(sim, s, t)
        registered = True

        comeback = False
        while not comeback:
            # An active phase: sessions every few days for weeks to years.
            gap = rng.choice((3.0, 5.0, 7.0, 10.0, 14.0, 21.0))
            phase_end = sim.day + int(rng.lognormvariate(3.6, 1.0))
            d = sim.day
            while True:
                d += 1 + int(rng.expovariate(1 / gap))
                if d > phase_end:
                    break
                yield d
                t = _cw_session(sim, s, sim.at(5, 21.5))
                x = r()
                if x >= 0.05:
                    continue
                if x < 0.004:
                    right = rng.choice(_CW_RIGHTS)
                    sim.request(s, t + 60 * _S, right, "support", rng.choice(_CW_STAFF))
                elif x < 0.009:
                    if not s.has_phone:
                        s.has_phone = True
                        sim.ev(s, "PersonalDataUpdated", t, src, "subject",
                               {"fields": ["phone"], "origin": "self"}, {"phone": s.phone})
                elif x < 0.012:
                    if "analytics" in s.consents:
                        s.revoke("analytics")
                        sim.ev(s, "ConsentWithdrawn", t, src, "subject",
                               {"purpose": "analytics", "via": "settings"})
                elif x < 0.014:
                    sim.ev(s, "ObjectionRaised", t, src, "subject",
                           {"purpose": "marketing", "via": "settings"})
                elif x < 0.03:
                    if not s.subs:
                        sim.subscribe(s, t, "cowrite-nyheter", "email", src)
                elif x < 0.049:
                    if job_seeker and not s.coach_email:
                        _cw_coach(sim, s, t)
                else:  # "delete my account"
                    yield sim.day + 1 + int(r() * 3)
                    sim.request(s, sim.at(7, 16), "erasure", "support", rng.choice(_CW_STAFF))
                    return
            last = sim.day
            # The phase is over: the job search ended, the CV is done...
            if s.coach_email and r() < 0.3:
                yield sim.day + 1 + int(r() * 20)
                sim.ev(s, "ConsentWithdrawn", sim.at(6, 21), src, "subject",
                       {"purpose": "coach_sharing", "via": "settings"})
                s.coach_email = ""
            if s.subs and r() < 0.35:
                yield max(sim.day + 1, last + 7 + int(r() * 140))  # newsletters keep coming
                sim.unsubscribe(s, sim.at(6, 21))
            x = r()
            if x < 0.05:
                yield max(sim.day + 1, last + 3 + int(r() * 150))
                sim.request(s, sim.at(7, 16), "erasure", "support", rng.choice(_CW_STAFF))
                return
            if x < 0.3:  # a pause shorter than the 6-month limit
                yield max(sim.day + 1, last + 20 + int(r() * 150))
                _cw_session(sim, s, sim.at(5, 21.5))
            elif x < 0.42:  # back after the account was deleted: sign up again
                yield max(sim.day + 1, last + 200 + int(r() * 700))
                s.subs = s.consents = ()
                s.coach_email = ""
                comeback = True
            else:
                return


# --- Coegi ------------------------------------------------------------------------------


def _coegi_register(sim: _Sim, s: _Subj) -> int:
    """First contact; returns the number of days the ledger learns of it late."""
    rng = sim.rng
    r = rng.random
    pii = {"name": s.name, "email": s.email}
    if r() < 0.75:
        pii["phone"] = s.phone
        s.has_phone = True
    if s.relation in _CONTACTS or s.relation == "consultant":
        # Entered by staff in the CRM; a third arrive with the weekly CRM import.
        staff = rng.choice(_COEGI_STAFF)
        late = 7 if r() < 0.3 else 0
        pool = {"customer_contact": _CUSTOMERS, "supplier_contact": _SUPPLIERS,
                "partner_contact": _PARTNERS}.get(s.relation, _CUSTOMERS)
        s.org = rng.choice(pool)
        if s.relation != "consultant":
            pii["employer"] = s.org
            pii["org_number"] = _org_number(s.org)
        t = sim.at(6, 16)
        sim.ev(s, "SubjectRegistered", t, "crm", staff, {"relation": s.relation}, pii, late)
        if r() < 0.3:
            sim.ev(s, "DataShared", t + 90 * _S, "crm", staff,
                   {"recipient_kind": "group_company", "recipient": rng.choice(_COEGI_GROUP),
                    "basis": "legitimate_interest"}, late=late)
        return late
    # Job seekers and students sign up through a web form and click "Skicka".
    t = sim.at(5, 21)
    sim.ev(s, "SubjectRegistered", t, "web", "subject", {"relation": s.relation}, pii)
    t += int((2 + r() * 20) * _S)
    if r() < 0.4:
        sim.consent(s, t, "analytics", "coegi-cookies", "web", banner=True)
        t += int((2 + r() * 20) * _S)
    if r() < 0.4:
        sim.consent(s, t, "profiling", "coegi-privacy", "web")
        t += int((2 + r() * 20) * _S)
    if r() < 0.45:
        t = sim.subscribe(s, t, "coegi-jobbtips", "email" if r() < 0.7 else "sms", "web")
    feature = "cv_upload" if s.relation == "job_seeker" else "thesis_application"
    sim.ev(s, "ServiceUsed", t + 40 * _S, "web", "subject",
           {"app": "coegi-karriar", "feature": feature})
    return 0


def _coegi_occasional(sim: _Sim, s: _Subj, t: int) -> None:
    """Rare things any Coegi relation does: objections, register extracts, opt-outs."""
    rng = sim.rng
    x = rng.random()
    if x < 0.006:
        right = rng.choice(_COEGI_RIGHTS)
        sim.request(s, t, right, "support", rng.choice(_COEGI_STAFF))
    elif x < 0.011:
        purpose = rng.choice(("marketing", "marketing", "profiling", "matching"))
        via = rng.choice(("email", "phone", "support", "settings"))
        if via == "settings":
            sim.ev(s, "ObjectionRaised", t, "web", "subject", {"purpose": purpose, "via": via})
        else:
            sim.ev(s, "ObjectionRaised", t, "support", rng.choice(_COEGI_STAFF),
                   {"purpose": purpose, "via": via})
    elif x < 0.015:
        if "profiling" in s.consents:
            s.revoke("profiling")
            sim.ev(s, "ConsentWithdrawn", t, "web", "subject",
                   {"purpose": "profiling", "via": "settings"})
    elif x < 0.03 and s.subs:
        sim.unsubscribe(s, t)


def _coegi_contact_day(sim: _Sim, s: _Subj) -> None:
    rng = sim.rng
    r = rng.random
    t = sim.at(6, 17)
    x = r()
    if x < 0.25 and s.relation == "customer_contact":  # customers have "Mina Sidor"
        sim.ev(s, "LoggedIn", t, "web", "subject",
               {"app": "mina-sidor", "method": rng.choice(("bankid", "sso"))})
        t += int((20 + r() * 200) * _S)
        sim.ev(s, "ServiceUsed", t, "web", "subject", {"app": "mina-sidor", "feature": "documents"})
    elif 0.25 <= x < 0.35 and len(s.subs) < 2:
        lst = "coegi-insikter" if not s.subs else "coegi-event"
        sim.subscribe(s, t, lst, rng.choice(_CHANNELS), "web")
    elif 0.35 <= x < 0.42 and "profiling" not in s.consents:
        sim.consent(s, t, "profiling", "coegi-privacy", "web")
    else:
        f = _COEGI_WEB[int(r() * 5)]
        sim.ev(s, "ServiceUsed", t, "web", "subject", {"app": "coegi-web", "feature": f})
        if f == "event_signup" and r() < 0.3:
            sim.consent(s, t + 30 * _S, "profiling", "coegi-privacy", "web")
    s.last_act = sim.day
    _coegi_occasional(sim, s, t + 300 * _S)


def _coegi_person(sim: _Sim, s: _Subj) -> Iterator[int]:
    rng = sim.rng
    r = rng.random
    s.en = r() < 0.05
    late = _coegi_register(sim, s)
    s.last_act = sim.day
    sim.registry.append(s)
    d = sim.day + late  # nothing else happens before the CRM import is known
    while True:
        if s.relation == "consultant":
            for _ in range(1 + int(r() * r() * 3)):  # assignments
                d += 1 + int(r() * 90)
                yield d
                s.org = rng.choice(_CUSTOMERS)
                staff = rng.choice(_COEGI_STAFF)
                sim.ev(s, "DataShared", sim.at(7, 15), "crm", staff,
                       {"recipient_kind": "customer", "recipient": s.org, "basis": "contract"})
                stop = d + 60 + int(r() * 420)
                while d < stop:  # fortnightly timesheets, invoiced monthly
                    d += 12 + int(r() * 5)
                    yield d
                    t = sim.at(6, 18)
                    if r() < 0.6:
                        sim.ev(s, "LoggedIn", t, "web", "subject",
                               {"app": "coegi-portal", "method": "bankid"})
                        t += int((20 + r() * 100) * _S)
                    sim.ev(s, "ServiceUsed", t, "web", "subject",
                           {"app": "coegi-portal", "feature": "timesheet"})
                    key = (s, s.org)
                    sim.coegi_hours[key] = sim.coegi_hours.get(key, 0) + 40 + int(r() * 41)
                    s.last_act = d
                    _coegi_occasional(sim, s, t + 600 * _S)
                    if s.erased:
                        return
        elif s.relation in _CONTACTS:
            life = d + int(rng.lognormvariate(6.0, 0.8))
            while True:
                d += 1 + int(rng.expovariate(1 / 45))
                if d > life:
                    break
                yield d
                _coegi_contact_day(sim, s)
                if s.erased:
                    return
        else:  # job seekers and students
            student = s.relation == "student"
            life = d + 30 + int(r() * (200 if student else 300))
            while True:
                d += 1 + int(rng.expovariate(1 / (18 if student else 9)))
                if d > life:
                    break
                yield d
                t = sim.at(5, 21)
                if r() < 0.4:
                    method = rng.choice(("password", "bankid", "magic_link"))
                    sim.ev(s, "LoggedIn", t, "web", "subject",
                           {"app": "coegi-karriar", "method": method})
                    t += int((10 + r() * 60) * _S)
                f = _COEGI_STUDENT[int(r() * 4)] if student else _COEGI_KARRIAR[int(r() * 6)]
                sim.ev(s, "ServiceUsed", t, "web", "subject",
                       {"app": "coegi-karriar", "feature": f})
                s.last_act = d
                if not student and r() < 0.12:  # presented to a customer for an assignment
                    sim.ev(s, "DataShared", sim.at(7, 16), "crm", rng.choice(_COEGI_STAFF),
                           {"recipient_kind": "customer", "recipient": rng.choice(_CUSTOMERS),
                            "basis": "legitimate_interest"})
                _coegi_occasional(sim, s, t + 300 * _S)
                if s.erased:
                    return
        # The relationship has ended; newsletters still go out for a while.
        last = s.last_act
        if s.subs and r() < 0.3:
            d = max(sim.day + 1, last + 10 + int(r() * 500))
            yield d
            sim.unsubscribe(s, sim.at(6, 21))
        x = r()
        if x < 0.03:
            d = max(sim.day + 1, last + 5 + int(r() * 700))
            yield d
            sim.request(s, sim.at(7, 16), "erasure", "support", rng.choice(_COEGI_STAFF))
            return
        if x < 0.06:
            d = max(sim.day + 1, last + 30 + int(r() * 900))
            yield d
            right = rng.choice(("access", "access", "objection"))
            sim.request(s, sim.at(7, 16), right, "support", rng.choice(_COEGI_STAFF),
                        scope="marketing" if right == "objection" else None)
            return
        if x < 0.18:  # the relationship is revived within the three years
            d = max(sim.day + 1, last + 120 + int(r() * 800))
        elif x < 0.22:  # back after more than three years: staff register the person anew
            d = max(sim.day + 1, last + 1120 + int(r() * 400))
            yield d
            s.subs = s.consents = ()
            staff = rng.choice(_COEGI_STAFF)
            sim.ev(s, "SubjectRegistered", sim.at(6, 16), "crm", staff, {"relation": s.relation},
                   {"name": s.name, "email": s.email, "phone": s.phone})
            s.last_act = d
            sim.registry.append(s)  # long since dropped by the quarterly refresh
        else:
            return


# --- driver -------------------------------------------------------------------------------


def generate_history(
    subjects: int = 1000,
    seed: int = 42,
    *,
    start: date = date(2021, 1, 1),
    end: date = date(2026, 11, 1),
) -> Iterator[DemoBatch]:
    """Yield one batch per simulated day that has events, recorded at 23:30 UTC that day.

    A batch holds the events the ledger learns that day in ``occurred_at`` order: that day's
    interactions plus late arrivals (billing exports, weekly CRM imports, offline app usage)
    that occurred earlier. Events that would only be learnt on or after ``end`` are dropped.
    """
    people = _people(subjects, seed)
    sim = _Sim(seed, start, end)
    rng = sim.rng
    span = sim.d1 - sim.d0
    for p in people:
        # Existing customers arrive with the initial import; the rest sign up over the years.
        x = rng.random()
        initial = 0.25 if p[0] == "coegi" else 0.08
        off = int(rng.random() * min(30, span)) if x < initial else int(rng.random() * span)
        sim.starts[sim.d0 + off].append(p)
    for day in range(sim.d0, sim.d1):
        batch = sim.run_day(day)
        if batch:
            yield DemoBatch(_UTC_EPOCH + timedelta(days=day) + BATCH_TIME, batch)


def _pick_relation(x: float) -> str:
    total = sum(w for _, w in _COEGI_RELATIONS)
    acc = 0.0
    for rel, w in _COEGI_RELATIONS:
        acc += w / total
        if x < acc:
            return rel
    return _COEGI_RELATIONS[-1][0]


def iter_events(subjects: int, seed: int, **kw: Any) -> Iterator[dict[str, Any]]:
    """The events of ``generate_history`` flattened, in log (recorded_at) order."""
    for batch in generate_history(subjects, seed, **kw):
        yield from batch.events


def write_jsonl(path: str | Path, subjects: int, seed: int, **kw: Any) -> int:
    """Write the history as JSON lines (for ``ledger publish``); returns the event count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for batch in generate_history(subjects, seed, **kw):
            f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in batch.events)
            n += len(batch.events)
    return n


if __name__ == "__main__":
    import argparse
    import resource
    import time

    ap = argparse.ArgumentParser(description="Measure demo history generation.")
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    t0 = time.perf_counter()
    count = batches = 0
    for b in generate_history(args.subjects, args.seed):
        count += len(b.events)
        batches += 1
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{count} events in {batches} batches for {args.subjects} subjects "
        f"({count / args.subjects:.1f}/subject) in {dt:.2f}s: {count / dt:,.0f} events/s, "
        f"peak RSS {rss:.0f} MiB"
    )
