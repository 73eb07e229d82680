"""User-facing errors.

An :class:`OmniError` carries a message that is meant to be shown to a person as one line:
the CLI prints it without a traceback and exits with status 1. Everything else is a bug.
"""


class OmniError(Exception):
    """An expected failure with a one-line, human-readable reason."""

    def __str__(self) -> str:  # keep it on one line whatever the caller passed
        return " ".join(super().__str__().split())


class MediaError(OmniError):
    """A media file could not be probed, decoded or written."""


class DecodeTimeout(MediaError):
    """A decode ran past its time limit and was killed."""


class ConfigError(OmniError):
    """A configuration file or override is invalid."""


class ManifestError(OmniError):
    """A manifest does not match its schema."""


class WeightsError(OmniError):
    """A pretrained checkpoint is missing, corrupt or cannot be fetched."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name if it has none): what a
    one-line :class:`OmniError` quotes from a third-party failure."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
