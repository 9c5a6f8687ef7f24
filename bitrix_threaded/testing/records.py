"""Deterministic record generation for the fake portal.

No record is stored: a record is rebuilt from its ID whenever it is read,
so a million deals cost one sorted ID array (8 bytes each). A per-(seed,
entity) tabulation hash turns the ID into 60 random bits; the low bits pick
one of 1024 prebuilt templates (the categorical fields: stage, currency,
amount, comments...), the other bits and the ID itself fill in the rest
(title, names, owners, dates). Copying a template and setting a dozen keys
keeps a record at about a microsecond. For deals, leads and contacts,
:data:`JSON_WRITERS` write the same record straight as JSON text.

References between records resolve: a deal's ``CONTACT_ID`` and ``COMPANY_ID``, a
converted lead's ``CONTACT_ID`` and a contact's ``COMPANY_ID`` name records that
exist when the data is generated, and owner fields name existing users. They are
picked through :class:`Refs`, built once per data set from the ID arrays.

Records come out in the internal shape described in :mod:`.schemas`.
Everything here is pure and thread-safe (module tables are read-only).
"""
from __future__ import annotations

import datetime
import itertools
import random
from array import array
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .jsontext import ENCODER

__all__ = ["ENTITIES", "GENERATORS", "JSON_WRITERS", "MAX_OWNER", "RecordKey", "Refs",
           "generate", "make_ids", "multi_fields"]

ENTITIES = ("deal", "lead", "contact", "company", "task", "user")

_M64 = 0xFFFFFFFFFFFFFFFF
MAX_OWNER = 9999  # owner fields refer to users 1..MAX_OWNER at most

# --- lookup tables --------------------------------------------------------
# Built once at import from fixed data, so output never depends on anything
# but (seed, entity, ID).

_INT = [str(i) for i in range(MAX_OWNER + 1)]
_EPOCH = datetime.date(2019, 1, 7)
_NDAYS = 4096  # ~11 years of creation dates, indexed modulo this
_DAYS = [(_EPOCH + datetime.timedelta(days=d)).isoformat() for d in range(_NDAYS + 128)]
_MIDNIGHTS = [d + "T03:00:00+03:00" for d in _DAYS]
_TIMES = ["T%02d:%02d:%02d+03:00" % (8 + (t * 7) % 11, (t * 13) % 60, (t * 29) % 60)
          for t in range(1024)]
_AMOUNTS = ["%d.00" % (((i * 7919) % 997 + 1) * (10 ** (i % 4)) * 5) for i in range(1024)]
_MONEY = [a.split(".")[0] + "|RUB" for a in _AMOUNTS]
_CONTRACTS = [None] * 4 + ["D-%04d/%02d" % (1000 + 37 * i, 19 + i % 6) for i in range(12)]

_ADJECTIVES = (
    "Annual", "Urgent", "Pilot", "Renewal", "Bulk", "Regional", "Online", "Extended",
    "Quarterly", "Express", "Premium", "Standard", "Срочный", "Годовой", "Новый", "Pending",
)
_NOUNS = (
    "supply contract", "license order", "service plan", "equipment lease", "consulting",
    "software upgrade", "maintenance", "delivery", "поставка", "подписка", "training",
    "installation", "audit", "support renewal", "hardware order", "integration",
)
_FIRST = (
    "Anna", "Boris", "Clara", "Denis", "Elena", "Fedor", "Galina", "Igor", "Julia", "Kirill",
    "Larisa", "Maxim", "Nadia", "Oleg", "Polina", "Roman", "Svetlana", "Timur", "Ульяна",
    "Виктор", "Yana", "Zakhar", "Alexey", "Marina",
)
_LAST = (
    "Ivanova", "Petrov", "Sidorova", "Smirnov", "Kuznetsova", "Popov", "Volkova", "Sokolov",
    "Lebedeva", "Kozlov", "Novikova", "Morozov", "Орлова", "Зайцев", "Pavlova", "Semenov",
    "Golubeva", "Vinogradov", "Bogdanova", "Vorobyov", "Fedorova", "Mikhailov", "Belova",
    "Tarasov",
)
_SECOND = (None, "", "Ivanovich", "Petrovna", "Sergeevich", "Andreevna", "Olegovich", None)
_HONORIFIC = (None, "HNR_RU_1", "HNR_RU_2", None)
_POSTS = ("Manager", "Director", "Engineer", "Accountant", "Buyer", "CEO", None, "Lawyer")
_COMPANIES = ("Vector LLC", "Orbita JSC", "Sever Trade", "Delta Group", "Romashka", "Kvant",
              None, "Alfa Logistic")
_COMPANY_NAMES = ("Vector", "Orbita", "Sever", "Delta", "Romashka", "Kvant", "Alfa", "Granit",
                  "Вектор", "Восход", "Polyus", "Taiga", "Meridian", "Volna", "Zenit", "Iskra")
_COMPANY_FORMS = (" LLC", " JSC", " Trade", " Group", " Logistic", " Holding", " Service",
                  " Plus")
_COMPANY_TYPES = ("CUSTOMER", "CUSTOMER", "SUPPLIER", "PARTNER", "COMPETITOR", "CUSTOMER",
                  "OTHER", "CUSTOMER")
_INDUSTRIES = ("IT", "MANUFACTURING", "BANKING", "CONSULTING", "FINANCE", "GOVERNMENT",
               "DELIVERY", "OTHER")
_EMPLOYEES = ("EMPLOYEES_1", "EMPLOYEES_2", "EMPLOYEES_3", "EMPLOYEES_4")
_DISTRICTS = ("Central", "North", "South", "East", "West", "Kuntsevo", "Arbat", None)
_COMMENTS = (None, None, None, "Call back next week", "Needs a discount", "", None,
             "Prefers e-mail", "Repeat customer", None, "Waiting for the contract", None,
             "VIP", None, "Send the price list", None)
_DEAL_TYPES = ("SALE", "COMPLEX", "GOODS", "SERVICES", "SERVICE", "SALE", "SALE", "GOODS")
_DEAL_STAGES = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE",
                "WON", "LOSE", "NEW")
_DEAL_SEMANTIC = {"WON": "S", "LOSE": "F"}
_LEAD_STATUSES = ("NEW", "IN_PROCESS", "PROCESSED", "JUNK", "CONVERTED", "NEW", "IN_PROCESS",
                  "NEW")
_LEAD_SEMANTIC = {"JUNK": "F", "CONVERTED": "S"}
_SOURCES = ("CALL", "EMAIL", "WEB", "ADVERTISING", "PARTNER", "RECOMMENDATION", "TRADE_SHOW",
            "OTHER")
_CURRENCIES = ("RUB", "RUB", "RUB", "USD", "EUR", "RUB", "KZT", "RUB")
_CONTACT_TYPES = ("CLIENT", "SUPPLIER", "PARTNER", "OTHER")
_TASK_TITLES = ("Prepare offer", "Call the client", "Check payment", "Update contract",
                "Send invoice", "Plan meeting", "Review report", "Подготовить КП")
_TASK_STATUSES = ("2", "2", "3", "2", "5", "4", "2", "6")
_WORK_POSITIONS = ("Sales manager", "Head of sales", "Accountant", "Developer", "Support",
                   "HR", "Director", "Logistics")


class RecordKey:
    """Tabulation-hash tables of one (seed, entity): ``hash(id)`` gives 60 bits."""

    __slots__ = ("t0", "t1", "t2")

    def __init__(self, seed: int, entity: str):
        rng = random.Random("%d:%s:hash" % (seed, entity))
        self.t0 = [rng.getrandbits(60) for _ in range(4096)]
        self.t1 = [rng.getrandbits(60) for _ in range(4096)]
        self.t2 = [rng.getrandbits(60) for _ in range(4096)]

    def hash(self, i: int) -> int:
        return self.t0[i & 4095] ^ self.t1[(i >> 12) & 4095] ^ self.t2[(i >> 24) & 4095]


class Refs:
    """What generated records refer to: users ``1..users``, existing contacts, companies.

    ``contacts`` has 4096 slots and ``companies`` 1024, each an existing ID as a
    string (spread evenly over the IDs, so every record is referred to when there are
    fewer), or None when there are none; the ``*_json`` tuples hold the same values as
    JSON text. Immutable; thread-safe.
    """

    __slots__ = ("users", "contacts", "companies", "contacts_json", "companies_json")

    def __init__(self, users: int, contacts: Sequence[int] = (),
                 companies: Sequence[int] = ()) -> None:
        self.users = min(max(users, 1), MAX_OWNER)
        self.contacts = _slots(contacts, 4096)
        self.companies = _slots(companies, 1024)
        self.contacts_json = tuple(_json_id(v) for v in self.contacts)
        self.companies_json = tuple(_json_id(v) for v in self.companies)


def _slots(ids: Sequence[int], size: int) -> Tuple[Optional[str], ...]:
    count = len(ids)
    if not count:
        return (None,) * size
    return tuple(str(ids[(k * count) // size]) if count >= size else str(ids[k % count])
                 for k in range(size))


def _json_id(value: Optional[str]) -> str:
    return "null" if value is None else '"%s"' % value


def make_ids(count: int, rng: random.Random, *, gaps: bool = True) -> "array[int]":
    """Ascending IDs: gaps of 1-3, plus two or three holes of thousands of IDs.

    With ``gaps=False`` the IDs are simply ``1..count`` (users).
    """
    if count <= 0:
        return array("q")
    if not gaps:
        return array("q", range(1, count + 1))
    steps = rng.choices((1, 2, 3), weights=(60, 25, 15), k=count)
    steps[0] = rng.randint(1, 5)
    if count > 1:
        for pos in rng.sample(range(1, count), min(count - 1, rng.randint(2, 3))):
            steps[pos] += rng.randint(1000, 9000)
    return array("q", itertools.accumulate(steps))


def _mix(x: int) -> int:
    # splitmix64 finaliser: fixed pseudo-random bits for template number x.
    x = (x * 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


# --- templates: the categorical fields, in schema order -------------------
# Keys set per record are present as None so that copies keep schema order.

def _deal_template(t: int) -> Dict[str, Any]:
    stage = _DEAL_STAGES[t & 7]
    category = (t >> 3) & 3 == 0
    return {
        "ID": None, "TITLE": None,
        "TYPE_ID": _DEAL_TYPES[(t >> 5) & 7],
        "CATEGORY_ID": "1" if category else "0",
        "STAGE_ID": "C1:" + stage if category else stage,
        "CURRENCY_ID": _CURRENCIES[(t >> 8) & 7],
        "OPPORTUNITY": _AMOUNTS[(t >> 11) & 1023],
        "IS_MANUAL_OPPORTUNITY": "Y" if (t >> 21) & 7 == 0 else "N",
        "TAX_VALUE": "0.00",
        "COMPANY_ID": None, "CONTACT_ID": None, "BEGINDATE": None, "CLOSEDATE": None,
        "OPENED": "N" if (t >> 24) & 7 == 0 else "Y",
        "CLOSED": "Y" if stage in _DEAL_SEMANTIC else "N",
        "COMMENTS": _COMMENTS[(t >> 27) & 15],
        "ASSIGNED_BY_ID": None, "CREATED_BY_ID": None, "MODIFY_BY_ID": None,
        "DATE_CREATE": None, "DATE_MODIFY": None,
        "SOURCE_ID": _SOURCES[(t >> 31) & 7],
        "UF_CRM_1594289616952": _DISTRICTS[(t >> 34) & 7],
        "UF_CRM_1594289659496": _MONEY[(t >> 37) & 1023] if (t >> 47) & 1 else "",
        "UF_CRM_1605533620303": _CONTRACTS[(t >> 48) & 15],
    }


def _lead_template(t: int) -> Dict[str, Any]:
    status = _LEAD_STATUSES[t & 7]
    return {
        "ID": None, "TITLE": None,
        "HONORIFIC": _HONORIFIC[(t >> 3) & 3],
        "NAME": None,
        "SECOND_NAME": _SECOND[(t >> 5) & 7],
        "LAST_NAME": None,
        "BIRTHDATE": "",
        "COMPANY_TITLE": _COMPANIES[(t >> 8) & 7],
        "SOURCE_ID": _SOURCES[(t >> 11) & 7],
        "STATUS_ID": status,
        "STATUS_SEMANTIC_ID": _LEAD_SEMANTIC.get(status, "P"),
        "POST": _POSTS[(t >> 14) & 7],
        "CURRENCY_ID": _CURRENCIES[(t >> 17) & 7],
        "OPPORTUNITY": _AMOUNTS[(t >> 20) & 1023],
        "IS_MANUAL_OPPORTUNITY": "N",
        "OPENED": "N" if (t >> 30) & 7 == 0 else "Y",
        "COMMENTS": _COMMENTS[(t >> 33) & 15],
        "HAS_PHONE": "N" if (t >> 37) & 7 == 0 else "Y",
        "HAS_EMAIL": "N" if (t >> 40) & 3 == 0 else "Y",
        "ASSIGNED_BY_ID": None, "CREATED_BY_ID": None, "MODIFY_BY_ID": None,
        "DATE_CREATE": None, "DATE_MODIFY": None,
        "COMPANY_ID": None, "CONTACT_ID": None,
        "UF_CRM_1594289813884": _LAST[(t >> 42) % 24] if (t >> 50) & 1 else None,
        "UF_CRM_1594289783260": _MONEY[(t >> 51) & 1023] if (t >> 61) & 1 else "",
    }


def _contact_template(t: int) -> Dict[str, Any]:
    return {
        "ID": None,
        "HONORIFIC": _HONORIFIC[t & 3],
        "NAME": None,
        "SECOND_NAME": _SECOND[(t >> 2) & 7],
        "LAST_NAME": None,
        "BIRTHDATE": _MIDNIGHTS[(t >> 5) & 2047] if (t >> 16) & 1 else "",
        "TYPE_ID": _CONTACT_TYPES[(t >> 17) & 3],
        "SOURCE_ID": _SOURCES[(t >> 19) & 7],
        "POST": _POSTS[(t >> 22) & 7],
        "COMMENTS": _COMMENTS[(t >> 25) & 15],
        "OPENED": "N" if (t >> 29) & 7 == 0 else "Y",
        "EXPORT": "Y",
        "HAS_PHONE": "N" if (t >> 32) & 7 == 0 else "Y",
        "HAS_EMAIL": "N" if (t >> 35) & 3 == 0 else "Y",
        "ASSIGNED_BY_ID": None, "CREATED_BY_ID": None, "MODIFY_BY_ID": None,
        "DATE_CREATE": None, "DATE_MODIFY": None,
        "COMPANY_ID": None,
        "LEAD_ID": None,
        "UF_CRM_1623415999295": None,
        "UF_CRM_1624183704770": _MIDNIGHTS[(t >> 37) & 2047] if (t >> 48) & 1 else "",
    }


def _company_template(t: int) -> Dict[str, Any]:
    return {
        "ID": None, "TITLE": None,
        "COMPANY_TYPE": _COMPANY_TYPES[t & 7],
        "INDUSTRY": _INDUSTRIES[(t >> 3) & 7],
        "EMPLOYEES": _EMPLOYEES[(t >> 6) & 3],
        "CURRENCY_ID": _CURRENCIES[(t >> 8) & 7],
        "REVENUE": _AMOUNTS[(t >> 11) & 1023],
        "COMMENTS": _COMMENTS[(t >> 21) & 15],
        "OPENED": "N" if (t >> 25) & 7 == 0 else "Y",
        "IS_MY_COMPANY": "N",
        "HAS_PHONE": "N" if (t >> 28) & 7 == 0 else "Y",
        "HAS_EMAIL": "N" if (t >> 31) & 3 == 0 else "Y",
        "ASSIGNED_BY_ID": None, "CREATED_BY_ID": None, "MODIFY_BY_ID": None,
        "DATE_CREATE": None, "DATE_MODIFY": None,
        "UF_CRM_1625140116421": _DISTRICTS[(t >> 33) & 7],
    }


def _task_template(t: int) -> Dict[str, Any]:
    return {
        "ID": None,
        "PARENT_ID": None,
        "TITLE": None,
        "DESCRIPTION": _COMMENTS[t & 15] or "",
        "PRIORITY": "2" if (t >> 4) & 7 == 0 else "1",
        "STATUS": _TASK_STATUSES[(t >> 7) & 7],
        "MULTITASK": "N",
        "GROUP_ID": _INT[(t >> 10) & 15] if (t >> 14) & 1 else "0",
        "STAGE_ID": "0",
        "RESPONSIBLE_ID": None, "CREATED_BY": None, "CREATED_DATE": None,
        "CHANGED_BY": None, "CHANGED_DATE": None, "CLOSED_BY": None, "CLOSED_DATE": None,
        "DEADLINE": None,
        "TIME_ESTIMATE": "0" if (t >> 15) & 3 else "3600",
        "ALLOW_CHANGE_DEADLINE": "Y" if (t >> 17) & 1 else "N",
        "TASK_CONTROL": "N",
        "MARK": None,
    }


_DEAL_T = [_deal_template(_mix(k + 1)) for k in range(1024)]
_LEAD_T = [_lead_template(_mix(k + 2048)) for k in range(1024)]
_CONTACT_T = [_contact_template(_mix(k + 4096)) for k in range(1024)]
_TASK_T = [_task_template(_mix(k + 6144)) for k in range(1024)]
_COMPANY_T = [_company_template(_mix(k + 8192)) for k in range(1024)]
_COMPANY_TITLES = [n + f for n in _COMPANY_NAMES for f in _COMPANY_FORMS]
_DEAL_TITLES = [a + " " + n + " #" for a in _ADJECTIVES for n in _NOUNS]
_LEAD_TITLES = ["Lead: " + n + " #" for n in _NOUNS]
_TASK_TITLE_PREFIXES = [t + " #" for t in _TASK_TITLES]


# --- generators: template copy + per-record fields ------------------------

def _deal(i: int, h: int, refs: Refs) -> Dict[str, Any]:
    rec = _DEAL_T[h & 1023].copy()
    s = str(i)
    d = (i // 400) % _NDAYS
    users = refs.users
    rec["ID"] = s
    rec["TITLE"] = _DEAL_TITLES[(h >> 10) & 255] + s
    # "0" is how the legacy API says "no company"; a missing contact is null.
    rec["COMPANY_ID"] = ((refs.companies[(h >> 18) & 1023] if (h >> 28) & 3 else None)
                         or "0")
    rec["CONTACT_ID"] = refs.contacts[(h >> 30) & 4095] if (h >> 42) & 3 else None
    rec["BEGINDATE"] = _MIDNIGHTS[d]
    rec["CLOSEDATE"] = _MIDNIGHTS[d + ((h >> 44) & 63)]
    rec["ASSIGNED_BY_ID"] = _INT[1 + (h >> 50) % users]
    rec["CREATED_BY_ID"] = _INT[1 + (h >> 22) % users]
    rec["MODIFY_BY_ID"] = _INT[1 + (h >> 36) % users]
    rec["DATE_CREATE"] = _DAYS[d] + _TIMES[(h >> 10) & 1023]
    rec["DATE_MODIFY"] = _DAYS[d + ((h >> 54) & 31)] + _TIMES[(h >> 40) & 1023]
    return rec


def _lead(i: int, h: int, refs: Refs) -> Dict[str, Any]:
    rec = _LEAD_T[h & 1023].copy()
    s = str(i)
    d = (i // 400) % _NDAYS
    users = refs.users
    rec["ID"] = s
    rec["TITLE"] = _LEAD_TITLES[(h >> 10) & 15] + s
    rec["NAME"] = _FIRST[(h >> 14) % 24]
    rec["LAST_NAME"] = _LAST[(h >> 19) % 24]
    rec["ASSIGNED_BY_ID"] = _INT[1 + (h >> 50) % users]
    rec["CREATED_BY_ID"] = _INT[1 + (h >> 24) % users]
    rec["MODIFY_BY_ID"] = _INT[1 + (h >> 36) % users]
    rec["DATE_CREATE"] = _DAYS[d] + _TIMES[(h >> 10) & 1023]
    rec["DATE_MODIFY"] = _DAYS[d + ((h >> 54) & 31)] + _TIMES[(h >> 40) & 1023]
    if rec["STATUS_ID"] == "CONVERTED":
        rec["CONTACT_ID"] = refs.contacts[(h >> 28) & 4095]
    return rec


def _contact(i: int, h: int, refs: Refs) -> Dict[str, Any]:
    rec = _CONTACT_T[h & 1023].copy()
    s = str(i)
    d = (i // 400) % _NDAYS
    users = refs.users
    rec["ID"] = s
    rec["NAME"] = _FIRST[(h >> 10) % 24]
    rec["LAST_NAME"] = _LAST[(h >> 15) % 24]
    rec["ASSIGNED_BY_ID"] = _INT[1 + (h >> 50) % users]
    rec["CREATED_BY_ID"] = _INT[1 + (h >> 24) % users]
    rec["MODIFY_BY_ID"] = _INT[1 + (h >> 36) % users]
    rec["DATE_CREATE"] = _DAYS[d] + _TIMES[(h >> 10) & 1023]
    rec["DATE_MODIFY"] = _DAYS[d + ((h >> 54) & 31)] + _TIMES[(h >> 40) & 1023]
    if (h >> 20) & 1:
        rec["COMPANY_ID"] = refs.companies[(h >> 28) & 1023]
    if (h >> 21) & 1:
        rec["UF_CRM_1623415999295"] = "C-" + s
    return rec


def _company(i: int, h: int, refs: Refs) -> Dict[str, Any]:
    rec = _COMPANY_T[h & 1023].copy()
    s = str(i)
    d = (i // 400) % _NDAYS
    users = refs.users
    rec["ID"] = s
    rec["TITLE"] = _COMPANY_TITLES[(h >> 10) & 127] + " #" + s
    rec["ASSIGNED_BY_ID"] = _INT[1 + (h >> 50) % users]
    rec["CREATED_BY_ID"] = _INT[1 + (h >> 24) % users]
    rec["MODIFY_BY_ID"] = _INT[1 + (h >> 36) % users]
    rec["DATE_CREATE"] = _DAYS[d] + _TIMES[(h >> 10) & 1023]
    rec["DATE_MODIFY"] = _DAYS[d + ((h >> 54) & 31)] + _TIMES[(h >> 40) & 1023]
    return rec


def _task(i: int, h: int, refs: Refs) -> Dict[str, Any]:
    rec = _TASK_T[h & 1023].copy()
    s = str(i)
    d = (i // 400) % _NDAYS
    users = refs.users
    creator = _INT[1 + (h >> 24) % users]
    changed = _DAYS[d + ((h >> 54) & 31)] + _TIMES[(h >> 40) & 1023]
    rec["ID"] = s
    rec["TITLE"] = _TASK_TITLE_PREFIXES[(h >> 10) & 7] + s
    rec["RESPONSIBLE_ID"] = _INT[1 + (h >> 50) % users]
    rec["CREATED_BY"] = rec["CHANGED_BY"] = creator
    rec["CREATED_DATE"] = _DAYS[d] + _TIMES[(h >> 10) & 1023]
    rec["CHANGED_DATE"] = changed
    if rec["STATUS"] == "5":
        rec["CLOSED_BY"] = creator
        rec["CLOSED_DATE"] = changed
    if (h >> 13) & 1:
        rec["DEADLINE"] = _MIDNIGHTS[d + ((h >> 14) & 63)]
    return rec


def _user(i: int, h: int, refs: Refs) -> Dict[str, Any]:
    return {
        "ID": str(i),
        "XML_ID": "user-%d" % i,
        "ACTIVE": i % 6 != 5,  # every sixth user (5, 11, ...) is dismissed
        "NAME": _FIRST[(h >> 3) % 24],
        "LAST_NAME": _LAST[(h >> 8) % 24],
        "SECOND_NAME": "",
        "EMAIL": "user%d@example.com" % i,
        "LAST_LOGIN": _DAYS[2000 + ((h >> 13) & 63)] + _TIMES[(h >> 19) & 1023],
        "DATE_REGISTER": _DAYS[(h >> 29) & 1023] + _TIMES[(h >> 39) & 1023],
        "IS_ONLINE": "N",
        "TIME_ZONE": "",
        "PERSONAL_GENDER": "M" if (h >> 49) & 1 else "F",
        "PERSONAL_BIRTHDAY": "",
        "WORK_POSITION": _WORK_POSITIONS[(h >> 50) & 7],
        "UF_DEPARTMENT": [1] if i == 1 else [1 + (h >> 53) % 5],
        "USER_TYPE": "employee",
    }


GENERATORS: Dict[str, Callable[[int, int, Refs], Dict[str, Any]]] = {
    "deal": _deal, "lead": _lead, "contact": _contact, "company": _company, "task": _task,
    "user": _user,
}


# --- the same records as JSON text ----------------------------------------
# Encoding a generated record with the json module costs several times more
# than generating it. These functions write the text the portal's encoder
# (compact separators, ASCII with \u escapes) would give for the generator's
# dict, from per-template format strings and pre-encoded value tables, for
# the record types legacy CRM lists return whole. Tests hold them equal to
# ``json.dumps(generator(...))`` for every template.

def _json_chunks(template: Dict[str, Any], slots: Tuple[str, ...]) -> List[str]:
    """The template's JSON text cut at the values of ``slots`` (in template order).

    ``len(slots) + 1`` chunks: the text before the first slot's value,
    between each two, and after the last.
    """
    if tuple(k for k in template if k in slots) != slots:
        raise ValueError("slots must be template keys, in template order")
    chunks = [""]
    for position, (key, value) in enumerate(template.items()):
        chunks[-1] += ("," if position else "{") + ENCODER.encode(key) + ":"
        if key in slots:
            chunks.append("")
        else:
            chunks[-1] += ENCODER.encode(value)
    chunks[-1] += "}"
    return chunks


def _quoted(values: Sequence[str]) -> List[str]:
    return [ENCODER.encode(v) for v in values]


def _open(values: Sequence[str]) -> List[str]:
    """JSON strings without their closing quote (a suffix follows)."""
    return [ENCODER.encode(v)[:-1] for v in values]


_INT_J = _quoted(_INT)
_MIDNIGHTS_J = _quoted(_MIDNIGHTS)
_DAYS_J = _open(_DAYS)
_TIMES_J = [t + '"' for t in _TIMES]
_FIRST_J = _quoted(_FIRST)
_LAST_J = _quoted(_LAST)
_DEAL_TITLES_J = _open(_DEAL_TITLES)
_LEAD_TITLES_J = _open(_LEAD_TITLES)

_DEAL_SLOTS = ("ID", "TITLE", "COMPANY_ID", "CONTACT_ID", "BEGINDATE", "CLOSEDATE",
               "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "DATE_CREATE", "DATE_MODIFY")
_LEAD_SLOTS = ("ID", "TITLE", "NAME", "LAST_NAME", "ASSIGNED_BY_ID", "CREATED_BY_ID",
               "MODIFY_BY_ID", "DATE_CREATE", "DATE_MODIFY", "CONTACT_ID")
_CONTACT_SLOTS = ("ID", "NAME", "LAST_NAME", "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID",
                  "DATE_CREATE", "DATE_MODIFY", "COMPANY_ID", "UF_CRM_1623415999295")
_DEAL_JT = [_json_chunks(t, _DEAL_SLOTS) for t in _DEAL_T]
_LEAD_JT = [_json_chunks(t, _LEAD_SLOTS) for t in _LEAD_T]
_CONTACT_JT = [_json_chunks(t, _CONTACT_SLOTS) for t in _CONTACT_T]
_LEAD_CONVERTED = [t["STATUS_ID"] == "CONVERTED" for t in _LEAD_T]


def _deal_json(i: int, h: int, refs: Refs) -> str:
    s = str(i)
    d = (i // 400) % _NDAYS
    c = _DEAL_JT[h & 1023]
    users = refs.users
    company = refs.companies_json[(h >> 18) & 1023] if (h >> 28) & 3 else "null"
    return (
        f'{c[0]}"{s}"{c[1]}{_DEAL_TITLES_J[(h >> 10) & 255]}{s}"{c[2]}'
        f'{_INT_J[0] if company == "null" else company}{c[3]}'
        f'{refs.contacts_json[(h >> 30) & 4095] if (h >> 42) & 3 else "null"}{c[4]}'
        f'{_MIDNIGHTS_J[d]}{c[5]}{_MIDNIGHTS_J[d + ((h >> 44) & 63)]}{c[6]}'
        f'{_INT_J[1 + (h >> 50) % users]}{c[7]}{_INT_J[1 + (h >> 22) % users]}{c[8]}'
        f'{_INT_J[1 + (h >> 36) % users]}{c[9]}{_DAYS_J[d]}{_TIMES_J[(h >> 10) & 1023]}{c[10]}'
        f'{_DAYS_J[d + ((h >> 54) & 31)]}{_TIMES_J[(h >> 40) & 1023]}{c[11]}')


def _lead_json(i: int, h: int, refs: Refs) -> str:
    s = str(i)
    d = (i // 400) % _NDAYS
    c = _LEAD_JT[h & 1023]
    users = refs.users
    return (
        f'{c[0]}"{s}"{c[1]}{_LEAD_TITLES_J[(h >> 10) & 15]}{s}"{c[2]}'
        f'{_FIRST_J[(h >> 14) % 24]}{c[3]}{_LAST_J[(h >> 19) % 24]}{c[4]}'
        f'{_INT_J[1 + (h >> 50) % users]}{c[5]}{_INT_J[1 + (h >> 24) % users]}{c[6]}'
        f'{_INT_J[1 + (h >> 36) % users]}{c[7]}{_DAYS_J[d]}{_TIMES_J[(h >> 10) & 1023]}{c[8]}'
        f'{_DAYS_J[d + ((h >> 54) & 31)]}{_TIMES_J[(h >> 40) & 1023]}{c[9]}'
        f'{refs.contacts_json[(h >> 28) & 4095] if _LEAD_CONVERTED[h & 1023] else "null"}'
        f'{c[10]}')


def _contact_json(i: int, h: int, refs: Refs) -> str:
    s = str(i)
    d = (i // 400) % _NDAYS
    c = _CONTACT_JT[h & 1023]
    users = refs.users
    code = f'"C-{s}"' if (h >> 21) & 1 else "null"
    return (
        f'{c[0]}"{s}"{c[1]}{_FIRST_J[(h >> 10) % 24]}{c[2]}{_LAST_J[(h >> 15) % 24]}{c[3]}'
        f'{_INT_J[1 + (h >> 50) % users]}{c[4]}{_INT_J[1 + (h >> 24) % users]}{c[5]}'
        f'{_INT_J[1 + (h >> 36) % users]}{c[6]}{_DAYS_J[d]}{_TIMES_J[(h >> 10) & 1023]}{c[7]}'
        f'{_DAYS_J[d + ((h >> 54) & 31)]}{_TIMES_J[(h >> 40) & 1023]}{c[8]}'
        f'{refs.companies_json[(h >> 28) & 1023] if (h >> 20) & 1 else "null"}{c[9]}{code}'
        f'{c[10]}')


# entity -> (i, hash, refs) -> the generated record as JSON text, where there is one.
JSON_WRITERS: Dict[str, Callable[[int, int, Refs], str]] = {
    "deal": _deal_json, "lead": _lead_json, "contact": _contact_json,
}


def generate(entity: str, record_id: int, key: RecordKey, refs: Refs) -> Dict[str, Any]:
    """The generated (never updated) record of ``entity`` with ``record_id``.

    References (owners, contacts, companies) are picked from ``refs``.
    """
    h = key.t0[record_id & 4095] ^ key.t1[(record_id >> 12) & 4095] \
        ^ key.t2[(record_id >> 24) & 4095]
    return GENERATORS[entity](record_id, h, refs)


def multi_fields(record_id: int, key: RecordKey, record: Dict[str, Any]
                 ) -> Dict[str, List[Dict[str, str]]]:
    """PHONE/EMAIL values of a generated lead or contact (per HAS_PHONE/HAS_EMAIL)."""
    base = record_id * 2
    out: Dict[str, List[Dict[str, str]]] = {}
    if record.get("HAS_PHONE") == "Y":
        out["PHONE"] = [{"ID": str(base), "VALUE_TYPE": "WORK",
                         "VALUE": "+7%010d" % (key.hash(record_id) % 10 ** 10),
                         "TYPE_ID": "PHONE"}]
    if record.get("HAS_EMAIL") == "Y":
        out["EMAIL"] = [{"ID": str(base + 1), "VALUE_TYPE": "WORK",
                         "VALUE": "client%d@example.org" % record_id, "TYPE_ID": "EMAIL"}]
    return out
