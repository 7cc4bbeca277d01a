"""Operator-edited Jinja2 templates, run sandboxed and within a budget.

Digest, subject, confirmation and web templates are code that someone other than us wrote.
Jinja2's sandbox keeps them away from Python's internals; it does not keep them from
asking for a number with ten billion digits (``10**(10**10)``, which the compiler would even
try to fold into a constant), a terabyte string (``'x' * 10**12``) or ten billion loop
turns (two nested ``range(100000)``). So every render here has a budget: integer powers and
products of a bounded size, repetitions and format widths of a bounded length, a bounded
number of loop turns, a bounded output, and a time limit as the last resort. Going past
any of them is a ``TemplateError`` with the template's line, like any other mistake in it.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel

from publisher.errors import Problem, PublisherError

MAX_INT_BITS = 4096  # ~1,200 decimal digits: more than any template needs to print
MAX_LENGTH = 1_000_000  # characters (or items) one expression may build
MAX_LOOP_TURNS = 1_000_000  # loop turns in one render, all loops together
MAX_OUTPUT = 10_000_000  # characters one render may produce
MAX_SECONDS = 10.0  # wall time of one render: the last resort, not the usual limit
_LOOP_FILTER = "_bounded_loop"
# The filters whose arguments say how much to build: center(10**9) is a gigabyte.
_SIZED_FILTERS = ("batch", "center", "indent", "slice", "truncate", "wordwrap")
# The string methods whose numbers say how long a result to build: 'x'.ljust(10**9).
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDE = re.compile(r"[1-9]\d{6,}")  # a width or precision of a million or more
_PERCENT_SPEC = re.compile(r"%[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?")


class TemplateError(PublisherError, ValueError):
    """A template that cannot be rendered (syntax, unknown variable, sandbox, budget)."""


class BudgetExceeded(jinja2.TemplateRuntimeError):
    """A template asked for more than one render may take."""


@dataclass
class _Budget:
    turns: int = 0
    deadline: float = 0.0

    def spend(self) -> None:
        self.turns += 1
        if self.turns > MAX_LOOP_TURNS:
            raise BudgetExceeded(f"more than {MAX_LOOP_TURNS:,} loop turns in one render")
        if self.turns % 4096 == 0 and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"rendering took more than {MAX_SECONDS:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    if budget is None:  # rendered outside render_template/render_string: a budget of its own
        budget = _Budget(deadline=time.monotonic() + MAX_SECONDS)
    for item in iterable:
        budget.spend()
        yield item


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"{what} would be a number of more than {MAX_INT_BITS} bits")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else 0


_escape_inner: Callable[[str], str] | None
try:  # markupsafe's C escaping, without wrapping each result in a Markup object
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - markupsafe without its speedups, or a later one
    _escape_inner = None


def output_escape(value: Any) -> str:
    """What ``{{ value }}`` writes in an autoescaped template: markupsafe's ``escape``, as
    text. The output is joined into one string anyway; making a ``Markup`` of every
    printed value first was a tenth of a page's rendering."""
    if _escape_inner is None:  # pragma: no cover
        return str(markupsafe.escape(value))
    if type(value) is str:
        return str(_escape_inner(value))
    html = getattr(value, "__html__", None)
    if html is not None:  # Markup, or an object that renders itself
        return str(html())
    return str(_escape_inner(str(value)))


class _Compiler(CodeGenerator):
    """Jinja2's code generator, writing the same output in fewer steps: each run of text
    and ``{{ }}`` values is yielded as one string rather than piece by piece (a page was
    a hundred small yields, each also counted against the budget), and values are
    escaped by ``output_escape``."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        super().visit_Template(node, frame)
        # After the module's own imports and functions: the name they look up when called.
        self.writeline("from publisher.digest.templates import output_escape as escape")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        if frame.buffer is not None or frame.require_output_check or len(node.nodes) < 2:
            super().visit_Output(node, frame)
            return
        # Jinja2's own code for an output into a buffer (as in a macro), then one yield.
        frame.buffer = self.temporary_identifier()
        try:
            self.writeline(f"{frame.buffer} = []")
            super().visit_Output(node, frame)
            self.writeline(f"yield str_join({frame.buffer})")
        finally:
            frame.buffer = None


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with the operators and calls that can build huge values checked first.
    Immutable: a template cannot change what it is given (``list.append``,
    ``dict.update``), so one render never leaks into the next, and a page rendered in one
    worker process is the page rendered in another."""

    code_generator_class = _Compiler
    # Intercepted operators are also never folded into constants at compile time.
    intercepted_binops = frozenset({"**", "*", "%", "//"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        # Every {% for %} iterates through the budget, whatever it iterates over.
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno
            )
        return tree

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
                raise BudgetExceeded(f"{left} ** {right} is too large a number")
        elif op == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise BudgetExceeded("the product is too large a number")
            else:
                count = right if isinstance(left, (str, list, tuple)) else left
                if isinstance(count, int) and max(_length(left), _length(right)) * count > (
                    MAX_LENGTH
                ):
                    raise BudgetExceeded(f"a repetition longer than {MAX_LENGTH:,} items")
        elif op == "%" and isinstance(left, str):
            _check_percent(left)
        result = super().call_binop(context, op, left, right)
        _check_int(result, "the result")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `article.title` on a dict: the sandbox first looks for an attribute, which for
        # a key raises AttributeError before the key is tried; a page makes dozens of these,
        # and the exceptions were a third of its rendering. A name the mapping's type does
        # not define is simply its key (what the sandbox's own fallback returns).
        if isinstance(obj, dict) and isinstance(attribute, str):
            if not hasattr(type(obj), attribute):
                try:
                    return obj[attribute]
                except KeyError:
                    return self.undefined(obj=obj, name=attribute)
        elif isinstance(obj, BaseModel) and attribute in type(obj).__pydantic_fields__:
            # A settings field (`site.title`): data, never one of Python's internals, and
            # the model is not one of the mutable containers the sandbox watches over.
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def call(
        __self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, bytes)) and name in _SIZED_METHODS:
            for value in (*args, *kwargs.values()):
                if isinstance(value, int) and value > MAX_LENGTH:
                    raise BudgetExceeded(f"{name}() with {value}, over {MAX_LENGTH:,}")
        # str.format reaches here wrapped by the sandbox; the format string is its owner.
        wrapped = getattr(__obj, "__wrapped__", None)
        spec = getattr(wrapped, "__self__", None)
        if isinstance(spec, str) and getattr(wrapped, "__name__", "") in ("format", "format_map"):
            _check_format(spec)
        return ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)


def _check_percent(template: str) -> None:
    for spec in _PERCENT_SPEC.findall(template):
        if "*" in spec or _WIDE.search(spec):
            raise BudgetExceeded(f"the format {spec!r} is too wide")


def _check_format(template: str) -> None:
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # not a valid format string: str.format itself says why
    for _, _, spec, _ in fields:
        # A nested field ({:{width}}) takes its width from the data: refused as well.
        if spec and ("{" in spec or _WIDE.search(spec)):
            raise BudgetExceeded(f"the format {{:{spec}}} is too wide")


def _checked_format(format_filter: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(format_filter)
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_percent(str(value))  # '%0999999999d' | format(1)
        return format_filter(value, *args, **kwargs)

    return checked


def _sized(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(filter_function)  # keeps jinja_pass_arg: pass_environment etc. still work
    def checked(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_LENGTH:
                raise BudgetExceeded(
                    f"{filter_function.__name__}() with {value}, over {MAX_LENGTH:,}"
                )
        return filter_function(*args, **kwargs)

    return checked


def environment(folder: Path, *fallbacks: Path) -> BoundedEnvironment:
    """Templates from ``folder``, then from ``fallbacks`` (the package's defaults):
    sandboxed, bounded, autoescaped for HTML, and every undefined variable an error."""
    env = BoundedEnvironment(
        loader=jinja2.FileSystemLoader([str(folder), *map(str, fallbacks)]),
        autoescape=lambda name: bool(name and name.endswith((".html", ".htm"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters[_LOOP_FILTER] = _bounded_loop
    for name in _SIZED_FILTERS:
        env.filters[name] = _sized(env.filters[name])
    env.filters["format"] = _checked_format(env.filters["format"])
    env.filters["datefmt"] = lambda value, fmt="%-d %B %Y": value.strftime(fmt)
    env.filters["isoformat"] = lambda value: value.isoformat()  # for <time datetime>
    return env


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render the template file ``name``; every failure is a ``TemplateError`` with its line."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            [Problem(exc.filename or name, exc.lineno, "template", exc.message or "syntax error")]
        ) from None
    except jinja2.TemplateNotFound as exc:
        folder = getattr(env.loader, "searchpath", ["."])[0]
        where = f"{folder}/{exc.name}"
        raise TemplateError([Problem(where, None, "template", "no such template")]) from None
    except Exception as exc:  # a budget refusal while compiling, say
        raise TemplateError([Problem(name, None, "template", _what(exc))]) from exc
    try:
        return _bounded_render(template, context)
    except Exception as exc:  # whatever a template does wrong is the template's problem
        line = _template_line(exc)
        raise TemplateError([Problem(name, line, "template", _what(exc))]) from exc


def render_string(
    env: jinja2.Environment,
    source: str,
    context: dict[str, Any],
    source_name: str,
    where: str,
    line: int | None = None,
) -> str:
    """Render a template given as text (a subject line from schedule.yaml, say), whose
    problems are reported at ``source_name``:``line``."""
    try:
        return _bounded_render(env.from_string(source), context)
    except Exception as exc:  # the template's problem, reported where it was written
        raise TemplateError([Problem(source_name, line, where, _what(exc))]) from exc


def _bounded_render(template: jinja2.Template, context: dict[str, Any]) -> str:
    token = _BUDGET.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        parts: list[str] = []
        size = 0
        for part in template.generate(context):
            size += len(part)
            if size > MAX_OUTPUT:
                raise BudgetExceeded(f"the output is longer than {MAX_OUTPUT:,} characters")
            parts.append(part)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)


def _what(exc: BaseException) -> str:
    if isinstance(exc, (jinja2.TemplateError, ArithmeticError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "ran out of memory"
    if isinstance(exc, RecursionError):
        return "calls itself too deeply (a macro without an end?)"
    return f"{type(exc).__name__}: {exc}"


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:  # bounded: the traceback's length
        if tb.tb_frame.f_code.co_filename.endswith((".html", ".htm", ".txt", ".css")):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
