"""Digests: articles -> one issue, rendered once (``issue``, with the operator's templates run
sandboxed and bounded by ``templates``), encoded once with per-recipient slots (``message``),
and finished per recipient by substitution (``personalize``). Pure: no clock, no database."""
