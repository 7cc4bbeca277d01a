"""Configuration: schedule.yaml read as YAML nodes (``yaml``), typed by field rules
(``fields``) and models (``models``), loaded with the folder it belongs to (``load``). The
base tier: every station may read it, it imports none of them."""

from publisher.config.load import DEFAULT_CONFIG, Publication, config_path, load_config
from publisher.config.models import (
    ALL_FORMATS,
    Author,
    BackendSettings,
    Config,
    Digest,
    Dkim,
    EmailSettings,
    FeedFormat,
    Schedule,
    Site,
    WebSettings,
    list_name_rule,
)

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_CONFIG",
    "Author",
    "BackendSettings",
    "Config",
    "Digest",
    "Dkim",
    "EmailSettings",
    "FeedFormat",
    "Publication",
    "Schedule",
    "Site",
    "WebSettings",
    "config_path",
    "list_name_rule",
    "load_config",
]
