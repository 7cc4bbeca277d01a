"""Delivery backends: finished messages in, a provider id (or a DeliveryError) out.

The one pluggable role of the project. A backend knows nothing of articles or digests; it
receives bytes and an envelope. Built-ins are registered as entry points in the group
``publisher.backends`` exactly as a third-party package registers its own.
"""

from publisher.backends.base import Backend, DeliveryError, Envelope, Message
from publisher.backends.registry import backend_pool, checked_backend, load_backend

__all__ = [
    "Backend",
    "DeliveryError",
    "Envelope",
    "Message",
    "backend_pool",
    "checked_backend",
    "load_backend",
]
