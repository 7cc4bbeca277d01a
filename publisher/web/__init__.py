"""The subscriber's side on the web: an ASGI application (Starlette), behind the same
configuration as everything else. ``create_app`` builds it; ``publisher serve`` runs it
with uvicorn."""

from publisher.web.app import create_app

__all__ = ["create_app"]
