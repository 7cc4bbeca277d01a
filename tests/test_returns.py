"""Returned mail, as mail systems write it: each kind of message with the decision it must
come to. An auto-reply is never a bounce; a complaint names the complaining recipient."""

from __future__ import annotations

import pytest

from publisher.returns.classify import Decision, classify

BOUNCE_TO = "Delivered-To: bounces+AbC123tok@notes.example\nReturn-Path: <>\n"

POSTFIX_DSN = (
    BOUNCE_TO
    + """\
From: MAILER-DAEMON@mx.notes.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

This is the mail system at host mx.notes.example. I'm sorry to have to inform you that
your message could not be delivered to one or more recipients.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.notes.example
Arrival-Date: Mon, 30 Nov 2026 08:00:01 +0000

Final-Recipient: rfc822; gone@example.org
Original-Recipient: rfc822;gone@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected:
    User unknown in virtual mailbox table

--B1
Content-Type: text/rfc822-headers

From: news@notes.example
To: gone@example.org
Subject: Kestrel Bay Notes

--B1--
"""
)

DELAYED_DSN = (
    BOUNCE_TO
    + """\
From: Mail Delivery System <MAILER-DAEMON@mx.notes.example>
Subject: Delayed Mail (still being retried)
Content-Type: multipart/report; report-type=delivery-status; boundary="B2"

--B2
Content-Type: text/plain

Delayed.

--B2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.notes.example

Final-Recipient: rfc822; full@example.org
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--B2--
"""
)

GMAIL_DSN = (
    BOUNCE_TO
    + """\
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
Subject: Delivery Status Notification (Failure)
Content-Type: multipart/report; boundary="G3"; report-type=delivery-status

--G3
Content-Type: multipart/related; boundary="G4"

--G4
Content-Type: text/plain; charset="UTF-8"

Address not found. Your message wasn't delivered to nobody.here@gmail.com because the
address couldn't be found, or is unable to receive mail.

--G4--

--G3
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; mx.notes.example

Final-Recipient: rfc822; Nobody.Here@gmail.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; The email account that you tried to reach does not exist.

--G3--
"""
)

EXCHANGE_DSN = (
    BOUNCE_TO
    + """\
From: postmaster@corp.example
Subject: Undeliverable: Kestrel Bay Notes
Content-Type: multipart/report; report-type=delivery-status;
    boundary="_E5_"

--_E5_
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups:
left.company@corp.example
The e-mail address you entered couldn't be found.

--_E5_
Content-Type: message/delivery-status

Reporting-MTA: dns;EX01.corp.example

Final-recipient: RFC822; left.company@corp.example
Action: failed
Status: 5.1.10
Diagnostic-code: smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found

--_E5_--
"""
)

EXIM_BOUNCE = (
    BOUNCE_TO
    + """\
From: Mail Delivery System <Mailer-Daemon@mail.isp.example>
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: closed@isp.example
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  closed@isp.example
    mailbox is full / account closed

------ This is a copy of the message, including all the headers. ------

From: news@notes.example
To: closed@isp.example
"""
)

ARF = (
    BOUNCE_TO
    + """\
From: Feedback Loop <fbl@mailbox.example>
Subject: Complaint about message from notes.example
Content-Type: multipart/report; report-type=feedback-report; boundary="F6"

--F6
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--F6
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <annoyed@mailbox.example>
Source-IP: 192.0.2.1

--F6
Content-Type: message/rfc822

From: news@notes.example
To: annoyed@mailbox.example
Subject: Kestrel Bay Notes

Body.
--F6--
"""
)

ARF_HEADERS_ONLY = (
    BOUNCE_TO
    + """\
From: Feedback Loop <fbl@bigmail.example>
Subject: FBL
Content-Type: multipart/report; report-type=feedback-report; boundary="F7"

--F7
Content-Type: text/plain

A complaint.

--F7
Content-Type: message/feedback-report

Feedback-Type: abuse
Version: 1

--F7
Content-Type: text/rfc822-headers

From: news@notes.example
To: Someone <someone@bigmail.example>

--F7--
"""
)

OUT_OF_OFFICE = """\
Delivered-To: bounces+AbC123tok@notes.example
From: Pat <pat@example.org>
Subject: Out of Office: Kestrel Bay Notes
Auto-Submitted: auto-replied

I am away until Monday. Mail to user unknown addresses will not be read; your message
could not be delivered to me in person. Permanent error: none.
"""

VACATION = """\
Delivered-To: news@notes.example
From: Sam <sam@example.org>
Subject: Re: Kestrel Bay Notes
Precedence: auto_reply

On holiday.
"""

MAILED_UNSUBSCRIBE = """\
Delivered-To: unsubscribe+TOKEN123abc@notes.example
To: unsubscribe+TOKEN123abc@notes.example
From: Reader <Reader@Example.org>
Subject: unsubscribe

"""

UNSUBSCRIBE_BY_SUBJECT = """\
To: unsubscribe@notes.example
From: Other <other@example.org>
Subject: Unsubscribe tok-abcdefgh12

Please.
"""

JUNK = """\
To: bounces@notes.example
From: seller@spam.example
Subject: Cheap boats

Buy now.
"""

CASES: dict[str, tuple[str, Decision]] = {
    "postfix": (POSTFIX_DSN, Decision("hard", ("gone@example.org",), "AbC123tok",
                                      "5.1.1 smtp; 550 5.1.1 <gone@example.org>: Recipient "
                                      "address rejected: User unknown in virtual mailbox table")),
    "delayed": (DELAYED_DSN, Decision("soft", ("full@example.org",), "AbC123tok",
                                      "4.2.2 smtp; 452 4.2.2 Mailbox full")),
    "gmail": (GMAIL_DSN, Decision("hard", ("nobody.here@gmail.com",), "AbC123tok",
                                  "5.1.1 smtp; The email account that you tried to reach does "
                                  "not exist.")),
    "exchange": (EXCHANGE_DSN, Decision("hard", ("left.company@corp.example",), "AbC123tok",
                                        "5.1.10 smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound;"
                                        " Recipient not found")),
    "exim": (EXIM_BOUNCE, Decision("hard", ("closed@isp.example",), "AbC123tok",
                                   "a bounce without a delivery status report")),
    "arf": (ARF, Decision("complaint", ("annoyed@mailbox.example",), "AbC123tok",
                          "feedback report: abuse")),
    "arf-headers": (ARF_HEADERS_ONLY, Decision("complaint", ("someone@bigmail.example",),
                                               "AbC123tok", "feedback report: abuse")),
    "out-of-office": (OUT_OF_OFFICE, Decision("auto-reply", (), "AbC123tok",
                                              "Out of Office: Kestrel Bay Notes")),
    "vacation": (VACATION, Decision("auto-reply", (), None, "Re: Kestrel Bay Notes")),
    "mailed-unsubscribe": (MAILED_UNSUBSCRIBE, Decision("unsubscribe", ("reader@example.org",),
                                                        "TOKEN123abc",
                                                        "a mail to the unsubscribe address")),
    "unsubscribe-subject": (UNSUBSCRIBE_BY_SUBJECT, Decision("unsubscribe", ("other@example.org",),
                                                             "tok-abcdefgh12",
                                                             "a mail to the unsubscribe address")),
    "junk": (JUNK, Decision("unknown")),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_each_returned_message_comes_to_its_decision(name: str) -> None:
    raw, expected = CASES[name]
    decided = classify(raw.encode(), "bounces", unsubscribe="unsubscribe@notes.example")
    assert decided == expected


def test_an_auto_reply_is_never_a_bounce() -> None:
    # It quotes what bounces say, comes back to the VERP address, and is still a reply.
    decided = classify(OUT_OF_OFFICE.encode(), "bounces", "unsubscribe@notes.example")
    assert decided.kind == "auto-reply" and decided.addresses == ()


def test_damaged_return_mail_is_decided_never_a_crash() -> None:
    """Every corpus message cut, spliced and sprinkled with stray bytes (undecodable
    headers, broken MIME parameters): each still comes to a decision."""
    import random

    chance = random.Random(7)  # the same damage on every run
    corpus = [raw.encode() for raw, _ in CASES.values()]
    for _ in range(1500):  # bounded
        damaged = bytearray(chance.choice(corpus))
        for _ in range(chance.randint(1, 30)):
            if not damaged:
                break
            at = chance.randrange(len(damaged))
            roll = chance.random()
            if roll < 0.4:
                damaged[at] = chance.randrange(256)
            elif roll < 0.7:
                del damaged[at : at + chance.randint(1, 50)]
            else:
                damaged[at:at] = bytes(chance.randrange(256) for _ in range(chance.randint(1, 20)))
        assert isinstance(
            classify(bytes(damaged), "bounces", "unsubscribe@notes.example"), Decision
        )
