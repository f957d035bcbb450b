"""User-facing errors: the CLI prints them as one line and exits non-zero, no traceback."""


class HotrecError(Exception):
    """Bad input or an impossible request, explained in one line."""


class MalformedInput(HotrecError):
    """A malformed row met in --strict mode: names the file and the line."""

    def __init__(self, path: str, line: int, kind: str, detail: str = "") -> None:
        self.path, self.line, self.kind = path, line, kind
        extra = f": {detail}" if detail else ""
        super().__init__(f"{path}:{line}: malformed row ({kind}){extra}")
