"""One contract for every built-in backend, then the SMTP backend against scripted faults."""

from __future__ import annotations

import email
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from publisher.backends import Backend, DeliveryError, Envelope, Message, load_backend
from publisher.backends.memory import MemoryBackend

from .smtpserver import Script, self_signed, smtp_server

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n"
    b"\r\nHello.\r\n.leading dot survives\r\n"
)


def envelope(recipient: str = "b@example.org", number: int = 1) -> Envelope:
    return Envelope("bounces@example.org", recipient, f"<m{number}@example.org>")


def stream(backend: Backend, recipients: list[str], stop_after: int = 0) -> list[str]:
    """``send_many`` of one message to each of ``recipients``: each result, as "sent" or
    ``stage code``; the stream closed after ``stop_after`` results (0: never)."""
    items = [(Message([MESSAGE]), envelope(r, n)) for n, r in enumerate(recipients)]

    def take(wait: bool) -> tuple[Message, Envelope] | None:
        return items.pop(0) if items else None

    outcomes = []
    results = backend.send_many(take)
    for outcome in results:
        if isinstance(outcome, DeliveryError):
            outcomes.append(f"{outcome.stage} {outcome.code}")
        else:
            outcomes.append("sent")
        if len(outcomes) == stop_after:
            results.close()
            break
    return outcomes


def refused_then_next(backend: Backend, script: Script, where: str, reply: str, stage: str) -> None:
    """The server refuses a message with ``reply`` (``where``: the script's mail_reply or
    dot_reply); the error says so at ``stage``, and the next message on the same session
    goes through."""
    with backend:
        setattr(script, where, reply)
        with pytest.raises(DeliveryError) as caught:
            backend.send(MESSAGE, envelope())
        assert (caught.value.stage, caught.value.code) == (stage, int(reply[:3]))
        setattr(script, where, None)
        backend.send(MESSAGE, envelope("next@example.org"))
    assert [r for _, r, _ in script.received] == ["next@example.org"]


class Contract:
    """What every backend must do; subclasses say how to make one and what it delivered."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        raise NotImplementedError

    def delivered(self, backend: Backend, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
        raise NotImplementedError

    def test_sends_and_returns_an_id(
        self, backend: Backend, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with backend:
            ids = [backend.send(MESSAGE, envelope(number=n)) for n in range(3)]
        assert all(isinstance(i, str) and i for i in ids)
        got = self.delivered(backend, capsys)
        assert len(got) == 3
        assert all(b"Subject: hi" in m and b"Hello." in m for m in got)
        assert all(b".leading dot survives" in m for m in got)

    def test_open_and_close_are_idempotent(
        self, backend: Backend, capsys: pytest.CaptureFixture[str]
    ) -> None:
        backend.open()
        backend.open()  # no second connection, no error
        backend.send(MESSAGE, envelope())
        backend.close()
        backend.close()
        assert len(self.delivered(backend, capsys)) == 1

    def test_options_have_a_schema(self, backend: Backend) -> None:
        # What `publisher check` validates: the options this backend was made with pass,
        # a key it does not know is refused.
        schema = type(backend).Options
        assert schema is not None
        schema.model_validate(backend.options)
        with pytest.raises(ValidationError):
            schema.model_validate({**backend.options, "no_such_option": 1})


class TestMemory(Contract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        yield load_backend("memory", {}, str(tmp_path))

    def delivered(self, backend: Backend, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
        assert isinstance(backend, MemoryBackend)
        return [m for _, m in backend.outbox]


class TestConsole(Contract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        yield load_backend("console", {}, str(tmp_path))

    def delivered(self, backend: Backend, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
        out = capsys.readouterr().out
        return [chunk.encode() for chunk in out.split("--- to ")[1:]]


class TestMaildir(Contract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        yield load_backend("maildir", {"path": "outbox"}, str(tmp_path))

    def delivered(self, backend: Backend, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
        folder = Path(backend.root, "outbox", "new")
        return [p.read_bytes() for p in sorted(folder.iterdir())]

    def test_a_resend_replaces_its_first_copy(self, backend: Backend) -> None:
        with backend:
            backend.send(MESSAGE, envelope())
            backend.send(MESSAGE, envelope())
        assert len(list(Path(backend.root, "outbox", "new").iterdir())) == 1
        assert list(Path(backend.root, "outbox", "tmp").iterdir()) == []


class TestSmtp(Contract):
    extensions: tuple[str, ...] = ()  # what the server offers beyond plain ESMTP

    @pytest.fixture
    def server(self) -> Iterator[Script]:
        with smtp_server() as (controller, script):
            script.extensions = self.extensions
            self.port = controller.port
            yield script

    @pytest.fixture
    def backend(self, tmp_path: Path, server: Script) -> Iterator[Backend]:
        self.script = server
        yield load_backend(
            "smtp",
            {"host": "127.0.0.1", "port": self.port, "tls": "none", "timeout": 1},
            str(tmp_path),
        )

    def delivered(self, backend: Backend, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
        return [content for _, _, content in self.script.received]

    @pytest.mark.parametrize(
        ("local", "code", "permanent", "connection"),
        [
            ("reject", 550, True, False),
            ("full", 552, True, False),
            ("badaddr", 553, True, False),
            ("tempfail", 451, False, False),
            ("busy", 450, False, False),
            ("notls", 454, False, False),
            ("closing", 421, False, True),
        ],
    )
    def test_replies_map_to_errors(
        self, backend: Backend, local: str, code: int, permanent: bool, connection: bool
    ) -> None:
        with backend:
            with pytest.raises(DeliveryError) as caught:
                backend.send(MESSAGE, envelope(f"{local}@example.org"))
            error = caught.value
            assert (error.code, error.permanent, error.connection) == (code, permanent, connection)
            assert error.reply
            # The next recipient still goes through (after a reconnect for 421).
            backend.send(MESSAGE, envelope("ok@example.org"))
        assert [r for _, r, _ in self.script.received] == ["ok@example.org"]

    @pytest.mark.parametrize("local", ["reset", "slow"])
    def test_lost_connection_is_transient_and_recovers(self, backend: Backend, local: str) -> None:
        with backend:
            with pytest.raises(DeliveryError) as caught:
                backend.send(MESSAGE, envelope(f"{local}@example.org"))
            assert not caught.value.permanent and caught.value.connection
            backend.send(MESSAGE, envelope("after@example.org"))
        assert "after@example.org" in [r for _, r, _ in self.script.received]

    def test_connection_refused(self, tmp_path: Path) -> None:
        from .smtpserver import free_port

        backend = load_backend(
            "smtp",
            {"host": "127.0.0.1", "port": free_port(), "tls": "none", "timeout": 1},
            str(tmp_path),
        )
        with pytest.raises(DeliveryError) as caught:
            backend.open()
        assert caught.value.connection and not caught.value.permanent

    def test_message_cap_reconnects(self, tmp_path: Path, server: Script) -> None:
        backend = load_backend(
            "smtp",
            {"host": "127.0.0.1", "port": self.port, "tls": "none", "max_per_connection": 2},
            str(tmp_path),
        )
        with backend:
            for n in range(5):
                backend.send(MESSAGE, envelope(number=n))
        assert len(server.received) == 5

    def test_provider_id_is_the_servers_reply(self, backend: Backend) -> None:
        with backend:
            assert backend.send(MESSAGE, envelope()) == "250 2.0.0 Ok: queued as Q1"


class TestSmtpPipelining(TestSmtp):
    """Every test of TestSmtp again, with PIPELINING offered: the envelope and DATA go in
    one write, their replies are read together, and a refusal leaves the session in
    step for the next message."""

    extensions: tuple[str, ...] = ("PIPELINING",)

    def test_the_envelope_goes_in_one_write(self, backend: Backend) -> None:
        with backend:
            for number in range(3):
                backend.send(MESSAGE, envelope(number=number))
        assert self.script.pipelined == [True, True, True]
        assert self.script.chunked == [False, False, False]
        assert [content for _, _, content in self.script.received] == [MESSAGE] * 3

    def test_a_refused_sender_leaves_the_session_in_step(self, backend: Backend) -> None:
        refused_then_next(backend, self.script, "mail_reply", "451 4.3.0 try later", "mail")

    def test_each_message_goes_with_the_next_envelope(self, backend: Backend) -> None:
        self.script.watch_following = True
        with backend:
            outcomes = stream(backend, [f"r{n}@example.org" for n in range(5)])
        assert outcomes == ["sent"] * 5
        assert [r for _, r, _ in self.script.received] == [f"r{n}@example.org" for n in range(5)]
        assert [content for _, _, content in self.script.received] == [MESSAGE] * 5
        assert self.script.followed == [True] * 4 + [False]  # one round trip a message

    def test_refusals_between_pipelined_messages_keep_the_rest_in_step(
        self, backend: Backend
    ) -> None:
        people = ["a", "reject1", "b", "closing2", "c", "tempfail3", "d", "reset4", "e", "f"]
        with backend:
            outcomes = stream(backend, [f"{p}@example.org" for p in people])
        lost = "dot None"  # the server dropped the connection after the final dot
        assert outcomes == ["sent", "rcpt 550", "sent", "rcpt 421", "sent", "rcpt 451", "sent",
                            lost, "sent", "sent"]  # fmt: skip
        delivered = [r.split("@")[0] for _, r, _ in self.script.received]
        assert delivered == ["a", "b", "c", "d", "e", "f"]  # each once, in order
        assert all(content == MESSAGE for _, _, content in self.script.received)

    def test_a_stream_closed_early_sends_nothing_more(self, backend: Backend) -> None:
        """The next message's envelope went out with the first's data; the loop stops
        after the first result: the second must not arrive, not even empty."""
        with backend:
            assert stream(backend, ["a@example.org", "b@example.org"], stop_after=1) == ["sent"]
            assert stream(backend, ["c@example.org"]) == ["sent"]
        assert [r for _, r, _ in self.script.received] == ["a@example.org", "c@example.org"]


class TestSmtpPipeliningAndChunking(TestSmtp):
    """With CHUNKING offered beside PIPELINING, DATA with the next envelope behind each
    message is still what goes (BDAT behind a pipelined envelope stalled 44 ms a message
    on Postfix)."""

    extensions = ("PIPELINING", "CHUNKING")

    def test_data_with_the_next_envelope_is_preferred(self, backend: Backend) -> None:
        self.script.watch_following = True
        with backend:
            outcomes = stream(backend, ["a@example.org", "b@example.org"])
        assert outcomes == ["sent", "sent"]
        assert self.script.pipelined == [True, True]
        assert self.script.followed == [True, False]
        assert self.script.chunked == [False, False]


class TestSmtpChunking(TestSmtp):
    """Every test of TestSmtp again with CHUNKING and without PIPELINING: each message is
    one BDAT, as it is, without dot-stuffing."""

    extensions = ("CHUNKING",)

    def test_messages_go_by_bdat_unchanged(self, backend: Backend) -> None:
        with backend:
            for number in range(3):
                backend.send(MESSAGE, envelope(number=number))
        assert self.script.chunked == [True, True, True]
        assert [content for _, _, content in self.script.received] == [MESSAGE] * 3

    def test_a_refused_message_is_the_dot_stage(self, backend: Backend) -> None:
        refused_then_next(backend, self.script, "dot_reply", "554 5.7.1 spam", "dot")


def test_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with smtp_server(password="right") as (controller, script):
        options = {
            "host": "127.0.0.1",
            "port": controller.port,
            "tls": "none",
            "username": "u",
            "password_env": "TEST_SMTP_PASSWORD",
        }
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        with pytest.raises(DeliveryError) as caught:
            load_backend("smtp", options, str(tmp_path)).open()
        assert caught.value.code == 535 and caught.value.permanent and caught.value.connection
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "right")
        with load_backend("smtp", options, str(tmp_path)) as backend:
            backend.send(MESSAGE, envelope())
        assert len(script.received) == 1
        monkeypatch.delenv("TEST_SMTP_PASSWORD")
        with pytest.raises(DeliveryError, match="password_env"):
            load_backend("smtp", options, str(tmp_path)).open()


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_verifies_certificates(tmp_path: Path, mode: str) -> None:
    context, cert = self_signed(tmp_path)
    tls, implicit = (context, None) if mode == "starttls" else (None, context)
    with smtp_server(tls=tls, implicit_tls=implicit) as (controller, script):
        options = {"host": "127.0.0.1", "port": controller.port, "tls": mode, "timeout": 5}
        with pytest.raises(DeliveryError) as caught:
            load_backend("smtp", options, str(tmp_path)).open()
        assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reply
        with load_backend("smtp", {**options, "ca_file": str(cert)}, str(tmp_path)) as backend:
            backend.send(MESSAGE, envelope())
        assert len(script.received) == 1
        parsed = email.message_from_bytes(script.received[0][2])
        assert parsed["Subject"] == "hi"


def test_unknown_backend_lists_what_is_installed(tmp_path: Path) -> None:
    with pytest.raises(LookupError) as caught:
        load_backend("carrier-pigeon", {}, str(tmp_path))
    assert str(caught.value) == (
        "no backend named 'carrier-pigeon'; installed: console, maildir, memory, smtp "
        "(or give package.module:Class)"
    )


def test_module_class_path(tmp_path: Path) -> None:
    backend = load_backend("publisher.backends.memory:MemoryBackend", {}, str(tmp_path))
    assert isinstance(backend, MemoryBackend)
    with pytest.raises(LookupError, match=r"not a publisher\.backends\.Backend"):
        load_backend("pathlib:Path", {}, str(tmp_path))
    with pytest.raises(LookupError, match="cannot be imported"):
        load_backend("no.such.module:Thing", {}, str(tmp_path))


def test_smtp_transparency_and_line_ends(tmp_path: Path) -> None:
    with smtp_server() as (controller, script):
        options = {"host": "127.0.0.1", "port": controller.port, "tls": "none"}
        with load_backend("smtp", options, str(tmp_path)) as backend:
            backend.send(b"Subject: bare\n\n.first\r.second\n..third", envelope())
            backend.send(b".Subject: dot first\r\n\r\nbody\r\n", envelope(number=2))
    assert script.received[0][2] == b"Subject: bare\r\n\r\n.first\r\n.second\r\n..third\r\n"
    assert script.received[1][2] == b".Subject: dot first\r\n\r\nbody\r\n"


def test_a_failed_auth_closes_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket of a refused AUTH used to stay open (one leaked per attempt)."""
    import gc
    import warnings

    with smtp_server(password="right") as (controller, _):
        options = {"host": "127.0.0.1", "port": controller.port, "tls": "none",
                   "username": "u", "password_env": "TEST_SMTP_PASSWORD"}  # fmt: skip
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(3):
                with pytest.raises(DeliveryError), load_backend("smtp", options, str(tmp_path)):
                    pass
            gc.collect()
        leaks = [w for w in seen if issubclass(w.category, ResourceWarning)]
        assert leaks == [], [str(w.message) for w in leaks]


BACKEND_CASES = [
    ("  type: smtp\n  host: 127.0.0.1\n  port: abc\n", "backend.port: 'abc' is not a whole number"),
    ("  type: smtp\n  port: 25\n", "backend.host: is required"),
    (
        "  type: smtp\n  host: h\n  hots: x\n",
        "backend.hots: unknown key (known keys: ca_file, connections, host, max_per_connection, password_env, port, timeout, tls, username)",
    ),
    (
        "  type: smtp\n  host: h\n  tls: ssl\n",
        "backend.tls: Input should be 'starttls', 'implicit' or 'none'",
    ),
    (
        "  type: smtp\n  host: h\n  connections: 0\n",
        "backend.connections: Input should be greater than or equal to 1",
    ),
    (
        "  type: maildr\n",
        "backend.type: no backend named 'maildr'; installed: console, maildir, memory, smtp (or give package.module:Class)",
    ),
    ("  type: maildir\n  pth: outbox\n", "backend.pth: unknown key (known keys: path)"),
]


@pytest.mark.parametrize(
    ("section", "message"),
    BACKEND_CASES,
    ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BACKEND_CASES)],
)
def test_backend_options_are_checked_with_their_lines(
    example: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    message: str,
) -> None:
    from publisher.cli import main

    monkeypatch.setenv("PUBLISHER_SECRET", "test-secret-0123456789")
    config = example / "schedule.yaml"
    text = config.read_text("utf-8").replace("  type: maildir\n  path: outbox\n", section)
    config.write_text(text, "utf-8")
    wrong = section.splitlines()[-1].split(":")[0].strip()
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith(f"  {wrong}:"))
    if "is required" in message:
        line = next(n for n, row in enumerate(text.splitlines(), 1) if row == "backend:")
    for command in (["check"], ["send", "weekly"]):
        assert main(["-c", str(config), *command, "--now", "2026-11-28T12:00:00+00:00"]) == 1
        err = capsys.readouterr().err
        assert f"schedule.yaml:{line}: {message}" in err.splitlines(), err
        assert "Traceback" not in err and "internal error" not in err
