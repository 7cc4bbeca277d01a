"""Validation of parsed YAML against pydantic models, with errors that point at lines.

Shared by schedule.yaml and article front matter. Field types that need care with YAML 1.1
habits live here too (see ``yamldoc`` for why every scalar arrives as text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time, tzinfo
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from publisher.characters import FORBIDDEN
from publisher.config.yaml import Document, dotted
from publisher.errors import ConfigError, Problem

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown keys are mistakes (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def validate_document(model: type[M], doc: Document, source: str, prefix: str = "") -> M:
    """Validate ``doc`` as ``model``; every error becomes ``source:line: path: message``."""
    return validate_value(
        model, {} if doc.value is None else doc.value, source, doc.line_of, prefix
    )


def validate_value(
    model: type[M],
    value: Any,
    source: str,
    line_of: Callable[[tuple[Any, ...]], int | None],
    prefix: str = "",
) -> M:
    """Validate ``value`` as ``model``; ``line_of`` gives the line of a key path (relative
    to ``value``), ``prefix`` the dotted path of ``value`` itself."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            where = dotted(loc)
            if prefix:
                where = f"{prefix}.{where}" if where else prefix
            problems.append(Problem(source, line_of(loc), where, _message(err, model, loc)))
        problems.sort(key=lambda p: p.line or 0)
        raise ConfigError(problems) from None


def _message(err: Any, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "dict_type"):
        return "must be a mapping of keys to values"
    if kind == "list_type":
        return "must be a list"
    msg = str(err["msg"])
    # pydantic prefixes messages from our own validators with "Value error, ".
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return sorted(field.alias or name for name, field in fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# --- field types -------------------------------------------------------------------------


def _int_text(value: Any) -> Any:
    # YAML 1.1 reads 012 as octal 10, YAML 1.2 as 12: we refuse to pick one silently.
    if isinstance(value, str) and re.fullmatch(r"[+-]?0[0-9_]+", value.strip()):
        raise ValueError(f"'{value}' has a leading zero; write it without (or quote it as text)")
    if isinstance(value, str) and not re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        raise ValueError(f"'{value}' is not a whole number")
    return value


Int = Annotated[int, BeforeValidator(_int_text)]

_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def _bool_text(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"'{value}' is not true or false (write true/false, yes/no, on/off)")
    return value


Bool = Annotated[bool, BeforeValidator(_bool_text)]


def text_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ValueError(
            "must be text, not a " + ("mapping" if isinstance(value, dict) else "list")
        )
    if isinstance(value, str) and (bad := FORBIDDEN.search(value)):
        # Such a character would break a feed or a mail header later; say so now.
        raise ValueError(f"contains the control character U+{ord(bad.group()):04X}")
    return value


Text = Annotated[str, BeforeValidator(text_value)]


def _zone(value: Any) -> Any:
    if isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{value}' is not a known IANA time zone (e.g. Europe/Berlin, UTC)"
            ) from None
    return value


TimeZoneName = Annotated[str, BeforeValidator(text_value), AfterValidator(_zone)]


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s]*)?", value):
        raise ValueError(f"'{value}' is not an absolute http(s) URL")
    return value


HttpUrl = Annotated[str, BeforeValidator(text_value), AfterValidator(_http_url)]


def placeholders(*names: str, required: bool = False) -> AfterValidator:
    """A text with ``{name}`` placeholders of ``names`` only (each one, if ``required``),
    checked when schedule.yaml is read (and so on every reload), not when the first
    article or issue is formatted with it. ``{{`` and ``}}`` stand for braces."""
    import string

    allowed = ", ".join("{" + name + "}" for name in names)

    def check(value: str) -> str:
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(value)]
        except ValueError:
            raise ValueError(
                f"'{value}' has an unmatched brace (placeholders: {allowed}; write {{{{ or "
                "}} for a brace)"
            ) from None
        for field in fields:
            if field is not None and field not in names:
                raise ValueError(
                    f"unknown placeholder {{{field}}} in '{value}' (placeholders: {allowed})"
                )
        missing = [name for name in names if required and name not in fields]
        if missing:
            raise ValueError(f"'{value}' must contain {{{missing[0]}}}")
        return value

    return AfterValidator(check)


def _mailbox(value: str) -> str:
    from publisher.headers import InvalidAddress, parse_mailbox

    try:
        parse_mailbox(value)
    except InvalidAddress as exc:
        raise ValueError(exc.problems[0].what) from None
    return value


def _address(value: str) -> str:
    _mailbox(value)
    if "<" in value or len(value.split()) != 1:
        raise ValueError(f"'{value}' must be a bare address such as bounces@example.org")
    return value.strip()


def _domain_name(value: str) -> str:
    # DKIM's d= and s= tags (RFC 6376 §3.5): dot-separated labels, nothing else.
    if not re.fullmatch(
        r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*",
        value,
    ):
        raise ValueError(f"'{value}' is not a domain name or selector such as s2026")
    return value


# Values that end up in mail headers. Text alone would let "\r\nBcc: ..." through: these
# are checked as exactly one address, with no control character anywhere.
Mailbox = Annotated[str, BeforeValidator(text_value), AfterValidator(_mailbox)]
Address = Annotated[str, BeforeValidator(text_value), AfterValidator(_address)]
DomainName = Annotated[str, BeforeValidator(text_value), AfterValidator(_domain_name)]


def parse_datetime(text: str, zone: tzinfo) -> datetime:
    """Read an ISO 8601 date or date-time; one without an offset is local to ``zone``.

    Accepts ``2026-11-02``, ``2026-11-02 09:30``, ``2026-11-02T09:30:00+01:00``, ``...Z``.
    """
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.combine(date.fromisoformat(text), time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"'{text}' is not a date (write 2026-11-02 or 2026-11-02 09:30 or with an offset)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    # "90s", "5m", "4h", "5d" or a number of seconds; never a bare "1:30" (YAML 1.1 would
    # have read it as 90).
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value)
        if not match:
            raise ValueError(f"'{value}' is not a duration such as 90s, 5m, 4h or 5d")
        return int(match.group(1)) * _UNITS[match.group(2) or "s"]
    return value


Duration = Annotated[int, BeforeValidator(_duration)]

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _size(value: Any) -> Any:
    # "800k", "2M" or a number of bytes (binary units: 1k = 1024 bytes).
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:([kmg])i?)?b?\s*", value, re.I)
        if not match:
            raise ValueError(f"'{value}' is not a size such as 800k or 2M")
        return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
    return value


Size = Annotated[int, BeforeValidator(_size)]
