"""Feeds: articles -> RSS 2.0, Atom 1.0 and JSON Feed bytes (``render``, pure) -> feed
files (``files``)."""
