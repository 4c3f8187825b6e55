"""Error types that map to the CLI's exit status and one-line messages."""


class UserError(Exception):
    """A mistake in the user's input (exit status 2): the message names the cause and the fix."""


class StageError(Exception):
    """A stage ran and failed (exit status 1): export, verification, build or packaging."""
