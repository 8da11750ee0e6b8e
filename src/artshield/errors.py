"""Errors that the command line turns into one clear line and an exit code.

Library code names the *parameter* a bad value came in by (`param="model"`), never a command-line
flag: a Python caller typed `load_model("x")`, not `--model x`. The CLI maps parameters to its
flags when it prints the error (see `ArtshieldError.render`).
"""
from __future__ import annotations


class ArtshieldError(Exception):
    """A problem the user can fix (bad input, missing model, unreachable hub); exit code 2.

    `param` and `value`, when given, say which argument was wrong: str(error) reads
    "model='x': no such folder ..." for a Python caller."""

    def __init__(self, message: str, *, param: str | None = None, value=None):
        self.message, self.param, self.value = message, param, value
        super().__init__(message if param is None else f"{param}={value!r}: {message}")

    def render(self, flags: dict[str, str] | None = None) -> str:
        """The error as one line, naming the parameter by its command-line flag where `flags` has one."""
        if self.param is None:
            return self.message
        flag = (flags or {}).get(self.param)
        if flag is None:
            return str(self)
        return f"{flag} {self.value}: {self.message}"


class InputError(ArtshieldError):
    """One input file is unusable; batch commands report it and go on with the others."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def as_text(text: str) -> str:
    """`text` as valid Unicode: a file name's bytes that are not UTF-8 (which Python keeps as lone
    surrogates, e.g. a Latin-1 'caf\\xe9.png') are shown as backslash escapes ('caf\\xe9.png')."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:          # a surrogate no file name can hold
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str) -> str:
    """`text` as one printable line: control characters a file name may hold (a newline, an escape)
    written as escapes ('\\n', '\\x1b'), and bytes that are not UTF-8 as in as_text."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in as_text(text))
