"""User-facing errors: the CLI prints these as one line, without a traceback."""


class CCMAError(Exception):
    """A mistake in the user's input (a file, a parameter); the message says which."""


class StoreError(CCMAError):
    """A feature, prototype or split file that is missing, incomplete or inconsistent."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
