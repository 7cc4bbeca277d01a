"""The models of schedule.yaml: every section, key and rule, validated by pydantic.

Validation happens once, at start, and reports every mistake with its line. Paths inside the
file are relative to the file's own folder, so a publication folder can be moved or cloned.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from publisher.config.fields import (
    Address,
    Bool,
    DomainName,
    Duration,
    HttpUrl,
    Int,
    Mailbox,
    Size,
    StrictModel,
    Text,
    TimeZoneName,
    placeholders,
    text_value,
)
from publisher.localtime import QuietHours

FeedFormat = Literal["rss", "atom", "json"]
ALL_FORMATS: tuple[FeedFormat, ...] = ("rss", "atom", "json")


def _language(value: str) -> str:
    # RSS and Atom both want an RFC 5646 tag; "en", "en-GB", "pt-BR", "zh-Hant".
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", value):
        raise ValueError(f"'{value}' is not a language tag such as en or en-GB")
    return value


def _author(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def _folder(value: str) -> str:
    if not value or "\0" in value:
        raise ValueError("must name a folder")
    return value


Folder = Annotated[str, BeforeValidator(text_value), AfterValidator(_folder)]


class Author(StrictModel):
    name: Text
    email: Address | None = None
    uri: HttpUrl | None = None


class Site(StrictModel):
    title: Text = Field(min_length=1)
    url: HttpUrl
    description: Text = ""
    author: Annotated[Author, BeforeValidator(_author)]
    language: Annotated[Text, AfterValidator(_language)] = "en"
    timezone: TimeZoneName = "UTC"
    # Where an article lives on the site; {slug} is replaced. Relative to `url`.
    permalink: Annotated[Text, placeholders("slug", required=True)] = "{slug}/"

    @property
    def base_url(self) -> str:
        return self.url if self.url.endswith("/") else self.url + "/"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ContentSettings(StrictModel):
    folder: Folder = "articles"
    # A larger article file is refused (with its error) rather than read: a scraper's
    # runaway output or a link to a huge file must not fill the memory.
    max_size: Size = Field(default=1024**2, ge=1)


class FeedsSettings(StrictModel):
    folder: Folder = "feeds"
    # Public URL of the output folder; default: <site.url>feeds/ (the folder's name).
    url: HttpUrl | None = None
    # Newest N items per feed; 0 means every article.
    items: Int = Field(default=20, ge=0)
    # RFC 5005 archives: every article, oldest first, in documents of this many, linked
    # from the feed (prev-archive) and to each other, so a reader can fetch the whole
    # history; 0: none. Only made while a feed holds fewer items than it has articles.
    archive_size: Int = Field(default=100, ge=0, le=10_000)
    content: Literal["full", "summary"] = "full"
    formats: list[FeedFormat] = Field(default_factory=lambda: list(ALL_FORMATS), min_length=1)
    # Per-tag feeds: `all`, `none`, or a list of tags.
    tags: Literal["all", "none"] | list[Text] = "all"
    # When `publisher run` rebuilds the feeds (default: every run, every 15 minutes).
    schedule: Schedule | None = None
    # WebSub hubs: announced in every feed and page (rel="hub"), and told of every feed a
    # build changed, so readers hear of a new article within seconds instead of polling.
    hubs: list[HttpUrl] = Field(default_factory=list, max_length=10)


class WebsiteSettings(StrictModel):
    """The publication's pages, written by `publisher build` beside the feeds and served by
    `publisher serve`: one page per article at its permalink, a front page and a page per
    tag (with paging), and the files the articles reference."""

    # false: the pages live elsewhere (then `link:` or site.permalink name their URLs).
    enabled: Bool = True
    folder: Folder = "site"
    per_page: Int = Field(default=10, ge=1, le=500)  # articles on a front or tag page


class StateSettings(StrictModel):
    folder: Folder = "var"
    # SQLAlchemy URL of the state database; default: SQLite file publisher.db in `folder`.
    # A PostgreSQL URL (postgresql+psycopg://...) works too.
    database: Text | None = None
    # Several `publisher run` may share the database: one is on duty, the others take
    # over when its lease, renewed every third of it, has not been renewed for this long
    # (on PostgreSQL a lock held by its connection ends at once with its process).
    duty_lease: Duration = Field(default=30, ge=3, le=3600)


class BackendSettings(StrictModel):
    """Where messages go. ``type``: a built-in (smtp, maildir, console, memory), another
    installed entry point of ``publisher.backends``, or ``package.module:Class``. The other
    keys are the backend's own options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Text = "maildir"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RateLimits(StrictModel):
    per_second: Int = Field(default=0, ge=0)  # 0: no limit
    per_hour: Int = Field(default=0, ge=0)
    per_day: Int = Field(default=0, ge=0)


class DeliverySettings(StrictModel):
    # Retries of 4xx replies and lost connections double from `retry_first` up to
    # `retry_max`, for at most `lifetime` (Postfix's minimal_backoff_time,
    # maximal_backoff_time and maximal_queue_lifetime: 300s, 4000s, 5d).
    retry_first: Duration = Field(default=300, ge=1)
    retry_max: Duration = Field(default=4000, ge=1)
    lifetime: Duration = Field(default=5 * 86400, ge=1)
    # An address is suppressed after this many permanent failures (5xx) in a row.
    hard_bounces: Int = Field(default=3, ge=1)
    # This many failed attempts in a row pause the issue; a later run resumes it.
    pause_after: Int = Field(default=50, ge=1)
    rate: RateLimits = RateLimits()
    # Messages recorded in the ledger per transaction (or every quarter second). A crash
    # can resend at most this many per connection, with their Message-IDs; 1 records each
    # message before the next goes out on its connection.
    record_every: Int = Field(default=100, ge=1, le=1000)
    # Sending processes on this machine, each with backend.connections connections;
    # auto: a second one for DKIM-signed issues of 2,000 rows or more on 2 or more cores
    # (signing is what one process is short of; see docs/performance.md).
    processes: Literal["auto"] | Annotated[int, Field(ge=1, le=16)] = "auto"
    # SMTP envelope sender (MAIL FROM), where bounces go; default: the digest's From.
    bounce_address: Address | None = None


class WorkerSettings(StrictModel):
    """Delivery on Celery workers (``publisher worker``), for a publication past one
    machine; without this section everything is sent in the scheduler's own processes."""

    # The variable holding the broker's URL (redis://... or amqp://...): it may carry a
    # password, so it never stands in schedule.yaml.
    broker_url_env: Text = "PUBLISHER_BROKER_URL"
    # Rows a task sends at most: small enough that a lost worker costs little, large
    # enough that a task's start (a claim, the messages rendered once) is amortized.
    batch: Int = Field(default=500, ge=1, le=10_000)
    # Worker processes that one `publisher worker` starts (Celery's prefork pool), each with
    # backend.connections connections of its own.
    concurrency: Int = Field(default=1, ge=1, le=64)
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "publisher"


def list_name_rule(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", value):
        raise ValueError(f"'{value}' must be lower-case letters, digits, '-' or '_'")
    return value


Name = Annotated[Text, AfterValidator(list_name_rule)]


def _cron(value: str) -> str:
    from publisher.scheduler.triggers import crontab_fields

    crontab_fields(value)  # raises ValueError naming the wrong field
    return value


def _quiet(value: str) -> str:
    QuietHours.parse(value)  # raises ValueError saying what is wrong
    return value.strip()


class Schedule(StrictModel):
    """When a job runs: a crontab line as crontab(5) defines it (5 fields or a macro such as
    @daily; weekday 0 and 7 are Sunday; names such as mon-fri) or an interval, in an IANA
    time zone (default: the site's)."""

    cron: Annotated[Text, AfterValidator(_cron)] | None = None
    interval: Duration | None = Field(default=None, ge=60)
    timezone: TimeZoneName | None = None
    # After downtime: `once` sends one catch-up issue for the latest missed period if it is
    # at most `max_lateness` old; `skip` sends none (the next issue includes the articles).
    catch_up: Literal["once", "skip"] = "once"
    max_lateness: Duration = Field(default=86400, ge=0)

    @model_validator(mode="after")
    def _one_rule(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of cron and interval")
        return self


class Digest(StrictModel):
    """One email digest: which articles, how it looks, who it is from."""

    name: Name
    # "Kestrel Bay Notes <news@kestrelbay.example>" or a bare address.
    sender: Mailbox = Field(alias="from")
    reply_to: Mailbox | None = None
    # A Jinja2 template of its own (sandboxed): {{ digest }}, {{ issue.number }},
    # {{ issue.date }}, {{ articles | length }}, {{ first.title }}.
    subject: Text = "{{ site.title }}: {{ first.title }}"
    template: Name = "digest"
    list_: Name | None = Field(default=None, alias="list")  # default: the digest's name
    tags: list[Text] = Field(default_factory=list)  # only articles with one of these tags
    max_articles: Int = Field(default=20, ge=1, le=200)
    # More articles waiting than max_articles: "wait" keeps the rest for the next issue
    # (oldest last); "drop" passes them over for good. send and status say how many.
    overflow: Literal["wait", "drop"] = "wait"
    content: Literal["full", "summary"] = "summary"
    skip_empty: Bool = True
    preheader: Text | None = None  # default: the first article's summary
    schedule: Schedule | None = None  # when `publisher run` sends it
    # `local`: each subscriber's copy at the schedule's hour in their own time zone (those
    # without one: the schedule's zone); one issue, composed when that hour comes in the
    # first of its subscribers' zones. `once`: everyone's at the same moment.
    deliver_at: Literal["once", "local"] = "once"
    # No scheduled copy is due in this daily range of the recipient's own clock ("22:00-
    # 07:00"): it waits for the range's end. Retries are not held back.
    quiet: Annotated[Text, AfterValidator(_quiet)] | None = None

    @model_validator(mode="after")
    def _local_needs_an_hour(self) -> Digest:
        if self.deliver_at == "local" and (self.schedule is None or self.schedule.cron is None):
            raise ValueError(
                "deliver_at: local needs a schedule with cron: the hour it names is what "
                "each subscriber's zone receives it at"
            )
        return self

    @property
    def list_name(self) -> str:
        return self.list_ or self.name


class DkimKey(StrictModel):
    selector: DomainName
    key_file: Text | None = None  # PEM file, relative to schedule.yaml
    key_env: Text | None = None  # or an environment variable holding the PEM

    @model_validator(mode="after")
    def _one_key(self) -> DkimKey:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_file and key_env")
        return self


class Dkim(DkimKey):
    domain: DomainName
    # A second signature with an Ed25519 key (RFC 8463), under a selector of its own.
    ed25519: DkimKey | None = None


class EmailSettings(StrictModel):
    # Where the web side answers; {token} is the signed, opaque unsubscribe token.
    unsubscribe_url: Annotated[HttpUrl, placeholders("token", required=True)] | None = None
    # A mailto: address for List-Unsubscribe as well (optional).
    unsubscribe_mailto: Address | None = None
    # The "view in browser" page of an issue; {digest} and {number} are replaced.
    archive_url: Annotated[HttpUrl, placeholders("digest", "number")] | None = None
    # Name of the environment variable holding the secret that signs tokens.
    secret_env: Text = "PUBLISHER_SECRET"
    dkim: Dkim | None = None


class WebSettings(StrictModel):
    # Templates of the pages `publisher serve` shows; a page missing here comes from the
    # package's defaults, so a publication overrides only what it wants (style.css, say).
    templates: Folder = "templates/web"
    # false: the sign-up form subscribes at once, without a confirmation mail (then anyone
    # can sign anyone up; keep the default unless the form sits behind a login).
    double_opt_in: Bool = True
    # How long a confirmation link works, from the hour of the sign-up.
    confirm_within: Duration = Field(default=7 * 86400, ge=3600)
    # Behind TLS: Strict-Transport-Security with this max-age (e.g. 365d); 0 sends none.
    hsts: Duration = Field(default=0, ge=0)
    # Seconds a client has to send a whole request (its head and body); an idle
    # keep-alive connection is closed after 5 s. Slow or silent clients cannot pile up.
    request_timeout: Duration = Field(default=10, ge=1)
    # Open connections at most; past that a request is answered 503.
    max_connections: Int = Field(default=1000, ge=1)


class SourceFilter(StrictModel):
    """Which upstream entries a filter matches: one of the tags (the entry's own
    categories or the source's tags), or one of the words in its title (case aside)."""

    tags: list[Text] = Field(default_factory=list)
    words: list[Text] = Field(default_factory=list)


class Source(StrictModel):
    """Another publication's feed (RSS, Atom or JSON Feed), fetched by `publisher run` (or
    `publisher sources fetch`) once its ``interval`` has passed; each of its entries is
    recorded once in the state database, and digests take them like articles (by tag),
    without the network; with ``publish``, the publication's own feeds and pages too."""

    name: Name
    url: HttpUrl
    tags: list[Text] = Field(default_factory=list)  # given to every entry of the source
    # full: an entry's whole text, where the feed has it; summary: its summary only.
    content: Literal["full", "summary"] = "full"
    interval: Duration = Field(default=3600, ge=300)  # between two fetches
    # Its entries in the publication's own feeds and pages too (linking to the original).
    publish: Bool = False
    include: SourceFilter | None = None  # only the entries it matches
    exclude: SourceFilter | None = None  # none of the entries it matches
    # More unseen entries than this in one fetch (a feed reset or moved) are held back
    # and reported, not sent, until `publisher sources release NAME`.
    hold_above: Int = Field(default=50, ge=1)


def _rate(value: Any) -> Any:
    # "0.3%" as people write it, or a fraction such as 0.003.
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"'{value}' is not a percentage such as 0.3%") from None
    return value


Rate = Annotated[float, BeforeValidator(_rate), Field(ge=0, le=1)]


def _verp_base(value: str) -> str:
    # The token takes up to 40 characters of the 64 a local part may have (RFC 5321).
    if len(value.rsplit("@", 1)[0]) > 20:
        raise ValueError("the part before @ must be at most 20 characters (VERP adds a token)")
    return value


class ImapMailbox(StrictModel):
    """The return mailbox on an IMAP server. TLS: implicit (port 993) or STARTTLS (143),
    with the server's certificate verified; ``none`` only for a server on this machine."""

    host: Text
    port: Int | None = Field(default=None, ge=1, le=65535)
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    user: Text
    # The environment variable holding the password (never the password itself).
    password_env: Text
    folder: Text = "INBOX"


class Webhooks(StrictModel):
    """ESPs that report bounces and complaints over HTTP to ``publisher serve``: the URLs
    are /returns/ses, /returns/postmark and /returns/mailgun."""

    # Amazon SES through SNS: the topic ARNs whose (signed) notifications are accepted.
    ses_topics: list[Text] = Field(default_factory=list)
    # Postmark: an environment variable holding "user:password", the HTTP basic
    # credentials written into the webhook URL configured at Postmark.
    postmark_auth_env: Text | None = None
    # Mailgun: an environment variable holding the HTTP webhook signing key.
    mailgun_key_env: Text | None = None


class ReturnsSettings(StrictModel):
    """Mail that comes back: bounces, complaints, auto-replies, mailed unsubscribes. Each
    message goes out with the envelope sender ``local+TOKEN@domain`` of ``address``
    (VERP: the token names the recipient and the issue, signed), so the server that
    receives returned mail must deliver ``local+anything`` to ``local`` (Postfix:
    recipient_delimiter = +), into the Maildir or IMAP mailbox named here."""

    address: Annotated[Address, AfterValidator(_verp_base)]
    maildir: Folder | None = None  # relative to schedule.yaml
    imap: ImapMailbox | None = None
    # Where processed messages are moved (a Maildir subfolder, an IMAP folder); messages
    # that are not understood stay where they are, for a person to read.
    processed: Text = "processed"
    interval: Duration = Field(default=300, ge=60)  # between two reads of the mailbox
    # An address is suppressed after this many soft bounces (a full mailbox, a delay)
    # within `soft_window`.
    soft_bounces: Int = Field(default=5, ge=1)
    soft_window: Duration = Field(default=30 * 86400, ge=3600)
    # A digest pauses when its latest issue passes one of these rates (Gmail's and
    # Yahoo's limit for complaints is 0.3%), once it went to at least `min_sent` people.
    complaint_rate: Rate = 0.003
    bounce_rate: Rate = 0.05
    min_sent: Int = Field(default=100, ge=1)
    webhooks: Webhooks = Webhooks()

    @model_validator(mode="after")
    def _one_mailbox(self) -> ReturnsSettings:
        if self.maildir is not None and self.imap is not None:
            raise ValueError("give at most one of maildir and imap")
        return self


class Config(StrictModel):
    site: Site
    content: ContentSettings = ContentSettings()
    feeds: FeedsSettings = FeedsSettings()
    website: WebsiteSettings = WebsiteSettings()
    state: StateSettings = StateSettings()
    templates: Folder = "templates/email"
    email: EmailSettings = EmailSettings()
    backend: BackendSettings = BackendSettings()
    delivery: DeliverySettings = DeliverySettings()
    digests: list[Digest] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    returns: ReturnsSettings | None = None
    workers: WorkerSettings | None = None
    web: WebSettings = WebSettings()
