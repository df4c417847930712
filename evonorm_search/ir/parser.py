"""DSL text -> Graph, with errors that name the problem, its line and its column.

The grammar (lark, LALR) keeps operator chains flat and the program's nesting is checked before
parsing, so no input can exhaust the stack; text size and node count are bounded too, so every input
is answered quickly with a Graph or a DSLError.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import lark
from lark.lexer import Token

from . import ops  # the views as `ops.FUNCTIONS` etc.: read at parse time, so rows added at run time count
from .graph import DEFAULT_MAX_NODES, Graph, GraphBuilder, GraphError
from .ops import AXES, OPS

MAX_TEXT_BYTES = 1_000_000
DEFAULT_MAX_DEPTH = 64  # parenthesis nesting
TOKENS_PER_NODE = 16  # a program may spend this many tokens per node it is allowed (shared subexpressions)


class DSLError(ValueError):
    """A program that is not valid DSL. `line` and `column` are 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line}, column {column}: {message}")


GRAMMAR = r"""
program: _NL? (statement (_NL statement)*)? _NL?
?statement: NAME "=" sum      -> assign
          | sum               -> bare
?sum: product ((PLUS | MINUS) product)*
?product: unary ((STAR | SLASH) unary)*
?unary: MINUS* atom
?atom: NUMBER                 -> number
     | NAME                   -> name
     | NAME "(" [sum ("," sum)*] ")" -> call
     | "(" sum ")"            -> paren

PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/
COMMENT: /#[^\n]*/
_NL: /\r?\n(?:[\t \f\r\n]++|#[^\n]*+)*+/
%ignore /[\t \f\r]+/
%ignore COMMENT
"""


class _JoinLinesInParens:
    """Post-lexer: newlines inside parentheses continue the line, as in Python."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for tok in stream:
            if tok.value == "(":
                depth += 1
            elif tok.value == ")":
                depth = max(depth - 1, 0)
            elif tok.type == "_NL" and depth > 0:
                continue
            yield tok


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(GRAMMAR, start="program", parser="lalr", postlex=_JoinLinesInParens(), propagate_positions=True)


# --------------------------------------------------------------------------------------------------
# Checks before parsing: size, characters, balance and depth of parentheses
# --------------------------------------------------------------------------------------------------


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


_SCAN = re.compile(
    r"(?P<comment>#[^\n]*)|(?P<open>\()|(?P<close>\))"
    r"|(?P<bad>[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd])|(?P<token>[A-Za-z0-9_.]+|[-+*/,=])"
)


def _precheck(text: str, max_depth: int, max_tokens: int) -> None:
    """Reject, before lark sees it, what would be slow or deep: size, tokens, nesting, binary data."""
    if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise DSLError(f"program is larger than {MAX_TEXT_BYTES} bytes")
    stack: list[int] = []
    tokens = 0
    for m in _SCAN.finditer(text):
        kind = m.lastgroup
        if kind == "comment":
            continue
        tokens += 1
        if tokens > max_tokens:
            raise DSLError(f"program has more than {max_tokens} tokens", *_position(text, m.start()))
        if kind == "open":
            stack.append(m.start())
            if len(stack) > max_depth:
                raise DSLError(f"expression nested deeper than {max_depth} parentheses", *_position(text, m.start()))
        elif kind == "close":
            if not stack:
                raise DSLError("unbalanced parentheses: ')' has no matching '('", *_position(text, m.start()))
            stack.pop()
        elif kind == "bad":
            raise DSLError(f"stray character {m.group()!r} (binary data?)", *_position(text, m.start()))
    if stack:
        raise DSLError("unbalanced parentheses: '(' is never closed", *_position(text, stack[-1]))
    if tokens == 0:
        raise DSLError("empty program: expected an expression such as 'x / std(x, group)'")


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of input"
    if token.type == "_NL":
        return "end of line"
    return repr(token.value)


def _syntax_error(text: str, err: lark.exceptions.LarkError) -> DSLError:
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return DSLError(f"unexpected character {ch!r}", err.line, err.column)
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            line, col = _position(text, len(text.rstrip()))
            return DSLError("unexpected end of input: the expression is incomplete", line, col)
        expected = sorted(err.expected)
        if "EQUAL" in expected and tok.type == "NAME":
            hint = " (missing operator?)"
        elif tok.type == "_NL":
            hint = ": the expression is incomplete"
        else:
            hint = ""
        line = tok.line or 1
        column = tok.column or 1
        return DSLError(f"unexpected {_describe(tok)}{hint}", line, column)
    if isinstance(err, lark.exceptions.UnexpectedEOF):
        line, col = _position(text, len(text))
        return DSLError("unexpected end of input: the expression is incomplete", line, col)
    return DSLError(f"cannot parse: {err}")


# --------------------------------------------------------------------------------------------------
# Tree -> graph
# --------------------------------------------------------------------------------------------------


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass
class _Definition:
    index: int
    line: int
    column: int


class _Lowering:
    """Walks the lark tree and builds the graph. Depth is bounded by `_precheck`."""

    def __init__(self, max_nodes: int):
        self.builder = GraphBuilder(max_nodes=max_nodes)
        self.names: dict[str, _Definition] = {}
        self.assigned_later: set[str] = set()

    def _add(self, meta_or_tok: object, op_name: str, args: tuple[int, ...] = (), axis: str | None = None) -> int:
        try:
            return self.builder.add_node(op_name, args, axis)
        except GraphError as e:
            raise DSLError(str(e), *_where(meta_or_tok)) from None

    def program(self, tree: lark.Tree) -> int:
        statements = tree.children
        if not statements:
            raise DSLError("empty program: expected an expression such as 'x / std(x, group)'")
        self.assigned_later = {s.children[0].value for s in statements if s.data == "assign"}
        result = -1
        for k, stmt in enumerate(statements):
            last = k == len(statements) - 1
            if stmt.data == "bare":
                if not last:
                    raise DSLError(
                        "only the last line may be a bare expression; assign this one to a name",
                        *_where(stmt),
                    )
                result = self.expr(stmt.children[0])
            else:
                result = self.assign(stmt)
        return result

    def assign(self, stmt: lark.Tree) -> int:
        name_tok, value = stmt.children
        name = name_tok.value
        if name in ops.NAMED_LEAVES:
            raise DSLError(f"{name!r} is predefined and cannot be assigned", name_tok.line, name_tok.column)
        if name in ops.FUNCTIONS or name in AXES:
            kind = "an axis" if name in AXES else "a function"
            raise DSLError(f"{name!r} is {kind} name and cannot be assigned", name_tok.line, name_tok.column)
        if name in self.names:
            first = self.names[name]
            raise DSLError(
                f"{name!r} is assigned twice (first at line {first.line}, column {first.column})",
                name_tok.line,
                name_tok.column,
            )
        index = self.expr(value)
        self.names[name] = _Definition(index, name_tok.line, name_tok.column)
        return index

    def expr(self, node: lark.Tree | Token) -> int:
        kind = node.data
        if kind == "number":
            return self.number(node.children[0])
        if kind == "name":
            return self.name(node.children[0])
        if kind == "paren":
            return self.expr(node.children[0])
        if kind == "call":
            return self.call(node)
        if kind == "unary":
            *signs, operand = node.children
            index = self.expr(operand)
            for sign in reversed(signs):
                index = self._add(sign, "neg", (index,))
            return index
        if kind in ("sum", "product"):
            children = node.children
            index = self.expr(children[0])
            for k in range(1, len(children), 2):
                op_tok, right = children[k], children[k + 1]
                index = self._add(op_tok, ops.INFIX[op_tok.value], (index, self.expr(right)))
            return index
        raise DSLError(f"unsupported construct {kind!r}", *_where(node))  # grammar and walker disagree

    def number(self, tok: Token) -> int:
        value = float(tok.value)
        if not math.isfinite(value):
            raise DSLError(f"number {tok.value} is out of range", tok.line, tok.column)
        try:
            return self.builder.const(value)
        except GraphError as e:
            raise DSLError(str(e), tok.line, tok.column) from None

    def name(self, tok: Token) -> int:
        name = tok.value
        if name in ops.NAMED_LEAVES:
            return self._add(tok, name)
        if name in self.names:
            return self.names[name].index
        if name in ops.FUNCTIONS:
            raise DSLError(f"{name!r} is a function; call it as {name}(...)", tok.line, tok.column)
        if name in AXES:
            raise DSLError(
                f"axis {name!r} can only appear as the second argument of an aggregation such as mean(x, {name})",
                tok.line,
                tok.column,
            )
        if name in self.assigned_later:
            raise DSLError(f"{name!r} is used before it is assigned", tok.line, tok.column)
        known = [*ops.NAMED_LEAVES, *self.names]
        raise DSLError(f"undefined name {name!r}{_suggest(name, known)}", tok.line, tok.column)

    def call(self, node: lark.Tree) -> int:
        fn_tok, *args = node.children
        args = [a for a in args if a is not None]
        fn = fn_tok.value
        opdef = OPS.get(fn)
        if opdef is None or fn not in ops.FUNCTIONS:
            raise DSLError(f"unknown function {fn!r}{_suggest(fn, ops.FUNCTIONS)}", fn_tok.line, fn_tok.column)
        if fn in ops.AGGREGATIONS:
            return self.aggregation(fn_tok, args)
        if len(args) != opdef.arity:
            plural = "s" if opdef.arity != 1 else ""
            raise DSLError(f"{fn} takes {opdef.arity} argument{plural}, got {len(args)}", fn_tok.line, fn_tok.column)
        return self._add(fn_tok, fn, tuple(self.expr(a) for a in args))

    def aggregation(self, fn_tok: Token, args: list) -> int:
        fn = fn_tok.value
        axes = ", ".join(AXES)
        if len(args) == 1:
            raise DSLError(f"{fn} needs an axis: {fn}(expr, AXIS) with AXIS one of {axes}", fn_tok.line, fn_tok.column)
        if len(args) != 2:
            raise DSLError(
                f"{fn} takes an expression and an axis, got {len(args)} arguments", fn_tok.line, fn_tok.column
            )
        axis_node = args[1]
        if axis_node.data != "name":
            raise DSLError(f"the axis of {fn} must be one of {axes}", *_where(axis_node))
        axis_tok = axis_node.children[0]
        if axis_tok.value not in AXES:
            raise DSLError(
                f"unknown axis {axis_tok.value!r}; expected one of {axes}{_suggest(axis_tok.value, tuple(AXES))}",
                axis_tok.line,
                axis_tok.column,
            )
        return self._add(fn_tok, fn, (self.expr(args[0]),), axis_tok.value)


def _where(item: object) -> tuple[int, int]:
    if isinstance(item, Token):
        return item.line or 1, item.column or 1
    meta = getattr(item, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.line, meta.column
    return 1, 1


def _as_text(text: object) -> str:
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DSLError(f"program is not UTF-8 text (byte {e.start})") from None
    if not isinstance(text, str):
        raise DSLError(f"expected DSL text, got {type(text).__name__}")
    return text


def parse(text: str | bytes, *, max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH) -> Graph:
    """Parse a DSL program into a Graph; raise DSLError(line, column) on any malformed input."""
    source = _as_text(text)
    _precheck(source, max_depth, TOKENS_PER_NODE * max_nodes)
    parser = _parser()
    try:
        tree = parser.parse(source)
    except lark.exceptions.LarkError as e:
        raise _syntax_error(source, e) from None
    lowering = _Lowering(max_nodes)
    output = lowering.program(tree)
    try:
        return lowering.builder.build(output)
    except GraphError as e:  # pragma: no cover - the builder already enforced every rule
        raise DSLError(str(e)) from None
