"""The one page layout of the web side: plain, accessible HTML that works without
JavaScript and on a phone."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

STYLE = (
    "body{font-family:Helvetica,Arial,sans-serif;margin:0;padding:24px;color:#1f2933;"
    "background:#eef2f5}main{max-width:560px;margin:0 auto;background:#fff;padding:24px 28px;"
    "border-radius:6px}h1{font-family:Georgia,serif;font-weight:normal;color:#12355b}"
    "input[type=email],input[type=text]{width:100%;padding:8px;font-size:16px;box-sizing:border-box}"
    "button{background:#12355b;color:#fff;border:0;padding:10px 18px;font-size:16px;"
    "border-radius:4px}@media (prefers-color-scheme:dark){body{background:#0d1b2a}"
    "main{background:#16263a;color:#e4ebf1}h1{color:#9cc7ef}}"
)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """``body`` is trusted HTML made by this package; ``title`` is escaped."""
    text = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(text, status_code=status)
