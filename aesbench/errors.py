"""The one error type users see: its message is a single line naming the thing and what to do."""


class AesbenchError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


def first_line(error: Exception) -> str:
    """An exception as one line, for messages that must stay one line."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
