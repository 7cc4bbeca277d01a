"""Delivery past one machine: the scheduler places tasks on a Celery broker
(``dispatch``), and ``publisher worker`` processes on any machine run them (``worker``),
each task sending up to a batch of an issue's due rows through the ledger's claims, so a
task run twice, or lost, sends nobody twice and loses nobody."""
