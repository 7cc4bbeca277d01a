"""Subscribers on the way in and out: addresses validated, CSV imported and exported.

Validation is syntax only (email-validator without DNS: this must work offline and fast);
a bad row of a CSV file is reported with its line number while the good rows are imported.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Connection

from publisher.errors import Problem
from publisher.headers import InvalidAddress, check_address, clean_text
from publisher.localtime import canonical_zone, zone_names
from publisher.store import Member, add_subscriber, members

# Column names of the address, lower-cased; "email address" is Mailchimp's export.
ADDRESS_COLUMNS = ("email", "email address", "address", "e-mail", "mail")
# And of the time zone (Mailchimp's export calls it TIMEZONE).
ZONE_COLUMNS = ("timezone", "time zone", "tz")


@functools.cache
def zone_choices() -> tuple[str, ...]:
    """The zones a form offers: the IANA names of places as they go today, and UTC (not
    the old names such as US/Eastern or Asia/Calcutta, which are still accepted)."""
    legacy = ("Etc/", "SystemV/", "US/", "posix", "right/")
    names = zone_names().values()
    places = sorted(
        n for n in names if "/" in n and not n.startswith(legacy) and canonical_zone(n) == n
    )
    return (*places, "UTC")


def normalize_zone(text: str) -> str:
    """The IANA time zone name as stored (its own spelling, an old name by the one it goes
    by today), or ValueError saying what is wrong."""
    found = zone_names().get(text.strip().lower())
    if found is None:
        raise ValueError(f"'{text.strip()}' is not an IANA time zone (such as Europe/Berlin)")
    return canonical_zone(found)


def normalize_address(text: str) -> str:
    """The address as it will be stored and used, or ValueError saying what is wrong."""
    try:
        result = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    address = str(result.normalized)
    if not result.local_part.isascii():
        # That would need SMTPUTF8 end to end; most receiving servers do not offer it.
        raise ValueError("addresses with non-ASCII characters before the @ are not supported")
    try:
        # What we put in headers is stricter than what RFC 5322 allows (no quoted local
        # parts, ASCII domains): refuse here what we could not send to later.
        check_address(address if address.isascii() else str(result.ascii_email or ""))
    except InvalidAddress:
        raise ValueError("this address cannot be used in a mail header") from None
    return address if address.isascii() else str(result.ascii_email)


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    unsubscribed: int = 0  # they unsubscribed from the list: left so
    suppressed: int = 0  # their address bounced for good: not subscribed
    problems: list[Problem] = field(default_factory=list)  # rows refused
    notes: list[Problem] = field(default_factory=list)  # rows left as they were, and why


def import_csv(db: Connection, path: Path, list_name: str, now: float) -> ImportReport:
    report = ImportReport()
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.problems.append(Problem(shown, None, "", f"cannot read: {exc.strerror}"))
        return report
    # Bytes that are not UTF-8 stay as lone surrogates, so one bad row is refused with its
    # line and the others are imported.
    text = data.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = {name.strip().lower(): name for name in reader.fieldnames or []}
    column = next((fields[c] for c in ADDRESS_COLUMNS if c in fields), None)
    if column is None:
        report.problems.append(
            Problem(
                shown, 1, "header", f"needs a column named one of: {', '.join(ADDRESS_COLUMNS)}"
            )
        )
        return report
    name_column = fields.get("name")
    zone_column = next((fields[c] for c in ZONE_COLUMNS if c in fields), None)
    # Mailchimp's export has the name in two columns.
    first, last = fields.get("first name"), fields.get("last name")
    line = reader.line_num
    for row in reader:
        where = line + 1  # the line this row starts on (a quoted field may span lines)
        line = reader.line_num
        raw = (row.get(column) or "").strip()
        if name_column:
            name = row.get(name_column) or ""
        else:
            name = " ".join(v for v in (row.get(first or ""), row.get(last or "")) if v)
        if not (raw + name).isascii() and _undecodable(raw + name):
            what = "not UTF-8: save the file as UTF-8 and import it again"
            report.problems.append(Problem(shown, where, column, what))
            continue
        try:
            address = normalize_address(raw)
        except ValueError as exc:
            report.problems.append(Problem(shown, where, column, f"{raw!r}: {exc}"))
            continue
        zone = (row.get(zone_column) or "").strip() if zone_column else ""
        try:
            timezone = normalize_zone(zone) if zone else None
        except ValueError as exc:
            report.problems.append(Problem(shown, where, zone_column or "", str(exc)))
            continue
        name = clean_text(name, 200)
        outcome = add_subscriber(db, address, name, list_name, now, timezone=timezone)
        if outcome == "added":
            report.added += 1
        elif outcome == "unchanged":
            report.unchanged += 1
        elif outcome == "unsubscribed":
            report.unsubscribed += 1
            what = f"{address} unsubscribed from {list_name}: left unsubscribed"
            report.notes.append(Problem(shown, where, column, what))
        else:
            report.suppressed += 1
            what = f"{address} is suppressed (it bounced): not subscribed"
            report.notes.append(Problem(shown, where, column, what))
    return report


def _undecodable(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def export_csv(db: Connection, list_name: str) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "status", "timezone"])
    yield out.getvalue()
    for member in members(db, list_name):
        out.seek(0)
        out.truncate()
        writer.writerow([member.address, member.name, status_of(member), member.timezone or ""])
        yield out.getvalue()


def status_of(member: Member) -> str:
    return "suppressed" if member.suppressed else member.status
