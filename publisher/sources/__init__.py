"""Upstream feeds in: fetched politely (``fetch``), parsed (``parse``), their entries
recorded once each in the state database (``poll``). A build reads them from there and
never needs the network."""
