"""Every error meant for an operator derives from :class:`EdgeemoError` and carries its exit code.

The CLI maps them once (``edgeemo: <prefix><message>``, then the code); layers raise the kind
that says what went wrong and never think about exit codes themselves.
"""

from __future__ import annotations

EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps it from restart-looping


class EdgeemoError(Exception):
    """A problem already phrased for the operator. ``prefix`` is what the CLI puts before it."""

    exit_code = 1
    prefix = ""


class ConfigError(EdgeemoError):
    """A configuration problem (one line per problem)."""

    exit_code = EXIT_CONFIG
    prefix = "config error: "


class ModelError(EdgeemoError):
    """A model file that cannot be used; the message names the file and what to do."""

    exit_code = EXIT_CONFIG
    prefix = "model error: "


class AcceleratorUnavailable(ModelError):
    """The accelerator (runtime library or device) is missing; a CPU fallback may apply."""

    exit_code = 1
    prefix = ""


class SourceError(EdgeemoError):
    """A source cannot deliver frames now (unreachable, stream broke); retried with backoff."""

    prefix = "source error: "


class OutboxError(EdgeemoError):
    """The durable event outbox cannot be opened or written."""


class EvalError(EdgeemoError):
    """Unusable evaluation input; the message names the file and the problem."""

    exit_code = 2
    prefix = "eval: "
