"""User-facing errors: the CLI prints these as one line, without a traceback."""


class CCMAError(Exception):
    """A mistake in the user's input (a file, a parameter); the message says which."""


class StoreError(CCMAError):
    """A feature, prototype, split or run-record file that is missing, damaged or inconsistent."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def describe(exc: BaseException, limit: int = 120) -> str:
    """``'Type: first line of the message'``, at most ``limit`` characters: a library's
    exception folded into one line of ours."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
