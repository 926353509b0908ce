"""What is wrong with the set-up, in words the operator reads.

A wrong or missing setting, or a failure at start (Telegram unreachable, the
token refused, a busy port, an unmigrated database) becomes one line naming
the variable, what is wrong and what a right value looks like, in the
operator's language: Russian when the process locale is Russian, else
English. `deskbridge` prints the lines and exits with code 2 (a setting to
fix) or 1 (something to retry), never with a traceback.

Settings errors come from pydantic, for the bot's `Settings` and for every
provider's settings class alike: `problems_from_validation` maps each error
to its variable (the field name, with the provider's prefix) and takes the
words from the catalogs (`config.<variable>`: what a right value looks like;
`config.<variable>_<error type>`: a sentence for one particular mistake),
falling back to pydantic's own message where the catalog has nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from bot.i18n import catalog, gettext

SECRET_SUFFIXES = ("_TOKEN", "_API_KEY", "_PASSWORD", "_SECRET", "_CREDENTIALS")
SHOWN_VALUE_LIMIT = 80
# A setting that must be changed (exit 2) against a failure that may pass (exit 1).
EXIT_SETTINGS = 2
EXIT_FAILURE = 1


def operator_language(environ: Mapping[str, str] | None = None) -> str:
    """"ru" when the process locale is Russian, else "en" (gettext's order:
    LANGUAGE, then LC_ALL, LC_MESSAGES, LANG)."""
    environ = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "").strip()
        if value:
            return "ru" if value.split(":")[0].lower().startswith("ru") else "en"
    return "en"


def is_secret(variable: str) -> bool:
    return variable.upper().endswith(SECRET_SUFFIXES)


def shown(variable: str, value: object) -> str | None:
    """The value as the operator may see it again: never a secret, a database
    URL without its password, long values cut."""
    if value is None or is_secret(variable) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    if variable.upper().endswith("_URL"):
        with contextlib.suppress(Exception):  # not a URL: shown as it is
            text = make_url(text).render_as_string(hide_password=True)
    if len(text) > SHOWN_VALUE_LIMIT:
        text = text[: SHOWN_VALUE_LIMIT - 1] + "…"
    return f"'{text}'"


@dataclass(frozen=True)
class Problem:
    """One thing to fix. `key` names a complete sentence in the catalogs; else
    the line is built from the variable, the requirement `config.<variable>`
    (or `fallback`, pydantic's English words) and the value given."""

    variable: str | None = None
    kind: str = ""
    value: str | None = None
    key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fallback: str = ""

    def text(self, lang: str) -> str:
        texts = catalog(lang)
        if self.key is not None:
            return gettext(lang, self.key, **self.params)
        if self.variable is None:
            return self.fallback
        name = self.variable.lower()
        params = {"variable": self.variable, "value": self.value or "", **self.params}
        precise = f"config.{name}_{self.kind}"
        if precise in texts:
            return gettext(lang, precise, **params)
        requirement = (gettext(lang, f"config.{name}", **params) if f"config.{name}" in texts
                       else self.fallback)
        if self.kind == "missing":
            return gettext(lang, "config.missing", variable=self.variable,
                           requirement=requirement)
        if self.value is not None:
            return gettext(lang, "config.wrong_value", variable=self.variable,
                           requirement=requirement, value=self.value)
        return gettext(lang, "config.wrong", variable=self.variable, requirement=requirement)


class OperatorError(Exception):
    """Stops a command: its problems are printed, one line each, and the
    process exits with `code`."""

    def __init__(self, problems: Iterable[Problem], code: int = EXIT_SETTINGS) -> None:
        self.problems = list(problems)
        self.code = code
        super().__init__("; ".join(p.text("en") for p in self.problems))


def failure(key: str, code: int = EXIT_FAILURE, **params: Any) -> OperatorError:
    """A single-line error from a catalog sentence."""
    return OperatorError([Problem(key=key, params=params)], code)


def _words(error: Mapping[str, Any]) -> str:
    words = str(error.get("msg", ""))
    return words.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def problems_from_validation(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """One problem per variable at fault (the first error of each)."""
    problems: list[Problem] = []
    seen: set[str | None] = set()
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        variable: str | None = None
        if loc:
            variable = str(loc[0]).upper()
            if prefix and not variable.startswith(prefix.upper()):
                variable = prefix.upper() + variable
        if variable is not None and variable in seen:
            continue
        seen.add(variable)
        kind = str(error.get("type", ""))
        value = None if kind == "missing" or variable is None else shown(variable,
                                                                          error.get("input"))
        problems.append(Problem(variable=variable, kind=kind, value=value,
                                params={k: str(v) for k, v in (error.get("ctx") or {}).items()
                                        if k in ("expected", "given")},
                                fallback=_words(error)))
    return problems


def problems_from_provider_error(exc: Exception, provider: str) -> list[Problem]:
    """A bridge factory's refusal of its settings. A pydantic error (raised as
    it is, or behind a ValueError) is mapped variable by variable; any other
    message is one line as the bridge wrote it."""
    prefix = provider.upper() + "_"
    if isinstance(exc, ValidationError):
        return problems_from_validation(exc, prefix)
    context = exc.__cause__ or exc.__context__
    if isinstance(context, ValidationError):
        return problems_from_validation(context, prefix)
    return [Problem(fallback=f"{provider}: {exc}")]


def report(error: OperatorError, lang: str | None = None) -> str:
    lang = lang or operator_language()
    return "\n".join(problem.text(lang) for problem in error.problems)
