"""The project's error types.  Every user mistake is a :class:`ConfigError` whose message
names the field and the allowed values; the CLI prints it as one line and exits with 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-supplied file or value is invalid; the message names the field."""


class UnknownNameError(KeyError, ConfigError):
    """A registry was asked for a name it does not hold; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""
