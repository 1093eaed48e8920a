"""The one exception type that reaches the user as a one-line message."""


class MtcError(Exception):
    """An error the user can act on.

    The message is one line that says what was wrong, where (file and line
    when there is one) and what to do. The CLI prints it without a traceback.
    """
