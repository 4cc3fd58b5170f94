"""Parse `.ftspec` text into the syntax tree (`compiler.ast`).

Lark LALR with the contextual lexer, `strict=True` (the grammar is conflict-free) and
`propagate_positions`. The parser is built once per process and cached on disk by Lark, so a
cold `ftc check` stays fast. Syntax errors become located diagnostics; common mistakes get a
friendly message through `match_examples`.
"""

from __future__ import annotations

import functools
import re
import threading
from importlib import resources

import sys


def _import_lark():
    """Import Lark without the optional `regex` module: this grammar needs only `re`, and `regex`
    costs a cold `ftc check` more than parsing does. A `regex` already loaded is left alone."""
    hidden = "regex" not in sys.modules
    if hidden:
        sys.modules["regex"] = None  # type: ignore[assignment]  # makes `import regex` fail inside lark
    try:
        import lark
    finally:
        if hidden:
            del sys.modules["regex"]
    return lark


_import_lark()

from lark import Lark, Token, Tree  # noqa: E402
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken  # noqa: E402

from ftc.compiler import ast
from ftc.compiler.diagnostics import Diagnostic, Severity, Span, did_you_mean
from ftc.compiler.schema import BLOCKS, DIRECTIVES, block_opening, block_spec, where_field_goes

MAX_NESTING = 32  # blocks, lists and calls together; deeper input is a diagnostic, not a RecursionError


class _NestingTooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


class _PerThreadTokens(threading.local):
    """A token list per thread: the parser object is shared, the tokens of one parse are not."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []


class _BracketPostLexer:
    """Drops newlines inside `[ ]` and `( )`, and remembers open brackets for error messages."""

    always_accept = ("_NL",)
    _open = {"LSQB": "RSQB", "LPAR": "RPAR", "LBRACE": "RBRACE"}

    def __init__(self) -> None:
        self.local = _PerThreadTokens()

    @property
    def stack(self) -> list[Token]:
        return self.local.tokens

    def process(self, stream):
        stack = self.stack
        stack.clear()
        for token in stream:
            kind = token.type
            if kind in self._open:
                stack.append(token)
                if len(stack) > MAX_NESTING:
                    raise _NestingTooDeep(token)
            elif kind in ("RSQB", "RPAR", "RBRACE"):
                if stack and self._open[stack[-1].type] == kind:
                    stack.pop()
            elif kind == "_NL" and stack and stack[-1].type in ("LSQB", "LPAR"):
                continue
            yield token


class _CommentCollector:
    """Lexer callback that keeps the comments of the current parse, for `ftc fmt`."""

    def __init__(self) -> None:
        self.local = _PerThreadTokens()

    @property
    def comments(self) -> list[Token]:
        return self.local.tokens

    def __call__(self, token: Token) -> None:
        self.comments.append(token)


_postlexer = _BracketPostLexer()
_comments = _CommentCollector()


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("ftc.grammar").joinpath("ftspec.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=False,
        postlex=_postlexer,
        lexer_callbacks={"COMMENT": _comments},
        cache=True,
    )


# Friendly syntax errors: each label is matched against the parser state of the failing input.
_EXAMPLES: dict[str, list[str]] = {
    "missing-equals": [
        "train {\n  lr 2e-4\n}\n",
        "train {\n  lr \"x\"\n}\n",
        "train {\n  lr [a]\n}\n",
        "train {\n  a.b 1\n}\n",
    ],
    "missing-brace": [
        "train {\n  lr = 2e-4\n",
        "train {\n",
        "train {\n  lr = 2e-4\n  inner {\n",
        "model \"x\" {",
    ],
    "top-level-attribute": [
        "lr = 3\n",
        "a.b = 3\n",
    ],
    "missing-value": [
        "train {\n  lr =\n}\n",
        "train {\n  lr = }\n",
        "train {\n  lr = ;\n}\n",
    ],
    "one-per-line": [
        "train {\n  lr = 1 epochs = 3\n}\n",
        "train {\n  lr = 1 b = 2\n}\n",
    ],
    "bare-name": [
        "hardware\n",
        "hardware;",
        "hardware",
    ],
}

_MESSAGES = {
    "missing-equals": ("E0003", "expected `=` between a field and its value", "write `key = value`"),
    "colon": ("E0004", "`:` is not an assignment in .ftspec", "use `=`: `key = value`"),
    "missing-brace": ("E0005", "block is not closed", "add the missing `}`"),
    "top-level-attribute": ("E0010", "attributes must be inside a block",
                            "put the field inside its block, e.g. `train { lr = 2e-4 }`"),
    "missing-value": ("E0012", "missing value after `=`", "write a value, e.g. `lr = 2e-4`"),
    "one-per-line": ("E0013", "one attribute per line", "start a new line or separate attributes with `;`"),
}

_TERMINAL_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "a newline",
    "LBRACE": "`{`", "RBRACE": "`}`", "LSQB": "`[`", "RSQB": "`]`", "LPAR": "`(`", "RPAR": "`)`",
    "EQUAL": "`=`", "COMMA": "`,`", "DOT": "`.`", "SEMICOLON": "`;`", "PERCENT": "`%`", "$END": "end of file",
}


def parse_text(text: str, file: str) -> tuple[ast.Recipe | None, list[Diagnostic]]:
    """Parse one file's text. Returns the tree, or None with the syntax diagnostics."""
    parser = _parser()
    _comments.comments.clear()
    try:
        tree = parser.parse(text)
    except _NestingTooDeep as exc:
        span = _token_span(exc.token, file)
        return None, [Diagnostic("E0009", Severity.ERROR, f"nesting deeper than {MAX_NESTING} levels",
                                 span, "too deep", "flatten the structure; recipes need only a few levels")]
    except UnexpectedInput as exc:
        return None, [_syntax_diagnostic(exc, text, file)]
    except (LarkError, RecursionError) as exc:  # pragma: no cover - defensive: never a traceback
        return None, [Diagnostic("E0001", Severity.ERROR, f"syntax error: {exc}", Span.point(file))]
    comments = tuple(ast.Comment(str(t), t.line, t.column) for t in _comments.comments)
    diagnostics: list[Diagnostic] = []
    builder = _Builder(file, diagnostics)
    recipe = ast.Recipe(file, tuple(builder.top_item(child) for child in tree.children), comments)
    return recipe, diagnostics


def parse_bytes(data: bytes, file: str) -> tuple[ast.Recipe | None, list[Diagnostic]]:
    """Decode UTF-8 (with or without BOM) and parse; invalid UTF-8 is a located diagnostic."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Diagnostic("E0008", Severity.ERROR, "file is not valid UTF-8",
                                 Span(file, line, column, line, column + 1),
                                 f"invalid byte 0x{data[exc.start]:02x}", "save the file as UTF-8")]
    return parse_text(text, file)


def _token_span(token: Token, file: str) -> Span:
    line = token.line or 1
    column = token.column or 1
    end_line = token.end_line or line
    end_column = token.end_column or column + max(1, len(str(token)))
    if end_line == line and end_column <= column:
        end_column = column + 1
    return Span(file, line, column, end_line, end_column)


def _eof_span(text: str, file: str) -> Span:
    lines = text.split("\n")
    line = len(lines)
    column = len(lines[-1]) + 1
    return Span(file, line, column, line, column + 1)


def _syntax_diagnostic(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else ""
        span = Span(file, exc.line, exc.column, exc.line, exc.column + 1)
        if char == '"':
            end = text.find("\n", exc.pos_in_stream)
            end = len(text) if end < 0 else end
            length = max(1, len(text[exc.pos_in_stream:end].rstrip("\r")))
            return Diagnostic("E0002", Severity.ERROR, "unterminated string",
                              Span(file, exc.line, exc.column, exc.line, exc.column + length),
                              "this string has no closing `\"`", "close the string on the same line")
        if char == ":":
            code, message, help_text = _MESSAGES["colon"]
            return Diagnostic(code, Severity.ERROR, message, span, "expected `=`", help_text)
        if char in ("}", "]", ")"):
            return Diagnostic("E0006", Severity.ERROR, f"unexpected `{char}`", span,
                              "nothing to close here", "remove it, or add the matching opening bracket")
        shown = _describe_char(char)
        return Diagnostic("E0007", Severity.ERROR, f"unexpected character {shown}", span,
                          "not valid here", _expected_help(exc))

    assert isinstance(exc, UnexpectedToken)
    stack = list(_postlexer.stack)  # before match_examples re-parses (and resets) it
    label = _match_example(exc)
    token = exc.token
    if label == "top-level-attribute" and token.type not in ("EQUAL", "DOT"):
        label = None  # the same parser state, but not an attribute
    at_end = token.type == "$END"
    span = _eof_span(text, file) if at_end else _token_span(token, file)
    if at_end and stack and stack[-1].type == "LBRACE":
        return Diagnostic("E0005", Severity.ERROR, "block is not closed", _token_span(stack[-1], file),
                          "this `{` has no matching `}`", "add `}` at the end of the block")
    if at_end and stack:
        return _not_closed(stack[-1], file)
    if token.type in ("RBRACE", "RSQB", "RPAR") and stack and stack[-1].type in ("LSQB", "LPAR") \
            and _BracketPostLexer._open[stack[-1].type] != token.type:
        # `lr = [1, 2` then `}`: the list is what is unfinished, not the block
        return _not_closed(stack[-1], file, f" before the `{token}` on line {token.line}")
    if label == "bare-name" and token.type in ("_NL", "SEMICOLON", "$END"):
        bare = _bare_name(text, span, file)
        if bare is not None:
            return bare
    if label in _MESSAGES:
        code, message, help_text = _MESSAGES[label]
        under = "expected `=` before this" if label == "missing-equals" else "unexpected here"
        if label == "top-level-attribute":
            name_span, home = _home_of_attribute(text, token, file)
            if name_span is not None:
                span, under, help_text = name_span, "outside any block", home or help_text
        return Diagnostic(code, Severity.ERROR, message, span, under, help_text)
    found = "end of file" if at_end else f"`{_short(str(token))}`"
    return Diagnostic("E0001", Severity.ERROR, f"unexpected {found}", span, "not valid here", _expected_help(exc))


def block_without_body(name: str, span: Span, label: str | None = None) -> Diagnostic:
    """E0015 for a block kind with no `{ ... }` after it: `hardware` alone here, `method lora` in the merge
    (a name and a phrase parse as a directive). The help is the opening to write, with the label written."""
    spec = BLOCKS[name]
    opening = f"{name} {label}" if label is not None and spec.label != "none" else block_opening(spec)
    return Diagnostic("E0015", Severity.ERROR, f"block `{name}` has no body", span, "no `{ ... }` after it",
                      f"write `{opening} {{ ... }}`")


def _bare_name(text: str, after: Span, file: str) -> Diagnostic | None:
    """A top-level name with nothing after it (`hardware` on its own line): say what it lacks."""
    lines = text.split("\n")
    line = lines[after.line - 1] if after.line <= len(lines) else ""
    found = re.search(r"([A-Za-z_][A-Za-z0-9_\-]*)\s*$", line[: after.column - 1])
    if found is None:
        return None
    name = found.group(1)
    span = Span(file, after.line, found.start(1) + 1, after.line, found.end(1) + 1)
    if name in BLOCKS:
        return block_without_body(name, span)
    if name in DIRECTIVES:
        return Diagnostic("E0015", Severity.ERROR, f"`{name}` needs a value", span, "nothing after it",
                          'write `recipe "my-run"`' if name == "recipe" else f'write `{name} "base.ftspec"`')
    guess = did_you_mean(name, list(BLOCKS))
    help_text = f"did you mean the block `{block_opening(BLOCKS[guess])} {{ ... }}`?" if guess else \
        "blocks are: " + ", ".join(BLOCKS)
    return Diagnostic("E0015", Severity.ERROR, f"`{_short(name)}` on its own is not a statement", span,
                      "a name with nothing after it", help_text)


def _home_of_attribute(text: str, token: Token, file: str) -> tuple[Span | None, str | None]:
    """For `lr = 2e-4` (or `train.lr = ...`) outside any block, `token` being the `=` or `.` after the
    name: the name's span, and the block it belongs to as a help line (None when no block has it)."""
    line = token.line or 1
    source_line = text.split("\n")[line - 1]
    found = re.search(r"([A-Za-z_][A-Za-z0-9_-]*)\s*$", source_line[: (token.column or 1) - 1])
    if found is None:
        return None, None
    name = found.group(1)
    span = Span(file, line, found.start(1) + 1, line, found.end(1) + 1)
    if token.type == "DOT":
        field = re.match(r"\.([A-Za-z_][A-Za-z0-9_-]*)", source_line[(token.column or 1) - 1:])
        if not block_spec(name) or field is None:
            return span, None
        span = Span(file, line, span.column, line, token.column + field.end())
        return span, f"write it inside its block: `{name} {{ {field.group(1)} = ... }}`"
    return span, where_field_goes(name)


def _not_closed(opener: Token, file: str, where: str = "") -> Diagnostic:
    """E0005 at an open `[` or `(`; `where` says where the closer goes."""
    closer = {"LSQB": "]", "LPAR": ")"}[opener.type]
    return Diagnostic("E0005", Severity.ERROR, f"`{opener}` is not closed", _token_span(opener, file),
                      f"this `{opener}` has no matching `{closer}`", f"add `{closer}`{where}")


def _error_key(exc: UnexpectedToken) -> tuple[int, str]:
    state = exc.state
    position = getattr(state, "position", state)
    return position, exc.token.type


@functools.lru_cache(maxsize=1)
def _example_keys() -> dict[tuple[int, str], str]:
    """(LALR state, token type) of each example's error -> its label.

    Lark's `match_examples` compares whole parser stacks, so an example only matches at the same
    nesting depth; the state on top of the stack and the token are what identify the mistake.
    """
    keys: dict[tuple[int, str], str] = {}
    for label, examples in _EXAMPLES.items():
        for example in examples:
            try:
                _parser().parse(example)
            except UnexpectedToken as exc:
                keys.setdefault(_error_key(exc), label)
            except UnexpectedInput:
                pass
    return keys


def _match_example(exc: UnexpectedToken) -> str | None:
    """The label of the common mistake this error looks like.

    Lark's `match_examples` first (same parser state and stack depth as an example); when the
    mistake sits at another nesting depth, the state on top of the stack and the token decide."""
    try:
        label = exc.match_examples(_parser().parse, _EXAMPLES, use_accepts=True)
    except Exception:  # it re-parses the examples; never let that escape
        label = None
    if label is not None:
        return label
    keys = _example_keys()
    key = _error_key(exc)
    if key in keys:
        return keys[key]
    by_state = {k[0]: label for k, label in keys.items()}
    return by_state.get(key[0])


def _expected_help(exc: UnexpectedInput) -> str | None:
    expected = getattr(exc, "accepts", None) or getattr(exc, "expected", None) or getattr(exc, "allowed", None)
    if not expected:
        return None
    names = sorted({_TERMINAL_NAMES.get(t, None) or t.lower() for t in expected if not t.startswith("__")})
    names = [n for n in names if n]
    if not names:
        return None
    return "expected " + ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]


def _describe_char(char: str) -> str:
    if not char:
        return "(end of file)"
    if char.isprintable() and not char.isspace():
        return f"`{char}`"
    return f"U+{ord(char):04X}"


def _short(text: str, limit: int = 30) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Builder:
    """Lark tree -> `compiler.ast` nodes. Recursion depth is bounded by MAX_NESTING."""

    def __init__(self, file: str, diagnostics: list[Diagnostic]):
        self.file = file
        self.diagnostics = diagnostics

    def span(self, node: Tree | Token) -> Span:
        if isinstance(node, Token):
            return _token_span(node, self.file)
        meta = node.meta
        if getattr(meta, "empty", True):
            return Span.point(self.file)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def top_item(self, node: Tree) -> ast.Directive | ast.Block:
        if node.data == "directive":
            name, phrase = node.children
            return ast.Directive(str(name), self.span(name), self.phrase(phrase), self.span(node))
        return self.block(node)

    def block(self, node: Tree) -> ast.Block:
        kind_token = node.children[0]
        label = None
        items = []
        for child in node.children[1:]:
            if isinstance(child, Tree) and child.data == "label":
                token = child.children[0]
                label = self.string(token) if token.type == "STRING" else ast.Word(str(token), self.span(token))
            elif isinstance(child, Tree) and child.data == "attribute":
                items.append(self.attribute(child))
            elif isinstance(child, Tree) and child.data == "block":
                items.append(self.block(child))
        return ast.Block(str(kind_token), self.span(kind_token), label, tuple(items), self.span(node))

    def attribute(self, node: Tree) -> ast.Attribute:
        key_node, phrase = node.children
        key = tuple(str(t) for t in key_node.children)
        return ast.Attribute(key, self.span(key_node), self.phrase(phrase), self.span(node))

    def phrase(self, node: Tree) -> ast.Value:
        atoms = [self.atom(child) for child in node.children]
        span = self.span(node)
        if len(atoms) == 1:
            return ast.Word("%", atoms[0].span) if isinstance(atoms[0], _Percent) else atoms[0]
        if len(atoms) == 2 and isinstance(atoms[0], ast.Number) and isinstance(atoms[1], (ast.Word, _Percent)):
            unit = "%" if isinstance(atoms[1], _Percent) else atoms[1].name
            return ast.Quantity(atoms[0], unit, atoms[1].span, span)
        parts = tuple(ast.Word("%", a.span) if isinstance(a, _Percent) else a for a in atoms)
        return ast.Phrase(parts, span)

    def atom(self, node: Tree):
        kind = node.data
        if kind == "number":
            token = node.children[0]
            return ast.Number(_number_value(str(token)), str(token), self.span(token))
        if kind == "string":
            return self.string(node.children[0])
        if kind == "word":
            token = node.children[0]
            return ast.Word(str(token), self.span(token))
        if kind == "percent":
            return _Percent(self.span(node))
        if kind == "list":
            return ast.ListValue(tuple(self.phrase(c) for c in node.children), self.span(node))
        if kind == "call":
            name = node.children[0]
            args = tuple(self.phrase(c) for c in node.children[1:])
            return ast.Call(str(name), self.span(name), args, self.span(node))
        raise AssertionError(kind)

    def string(self, token: Token) -> ast.String:
        raw = str(token)[1:-1]
        out = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw) and not _is_control(raw[i + 1]):
                nxt = raw[i + 1]
                mapped = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}.get(nxt)
                if mapped is None:
                    col = token.column + 1 + i
                    self.diagnostics.append(Diagnostic(
                        "E0011", Severity.ERROR, f"unknown escape `\\{nxt}` in string",
                        Span(self.file, token.line, col, token.line, col + 2), "not an escape",
                        'the escapes are `\\"`, `\\\\`, `\\n` and `\\t`'))
                    mapped = nxt
                out.append(mapped)
                i += 2
            elif _is_control(ch):  # a NUL would reach file paths and os calls
                col = token.column + 1 + i
                self.diagnostics.append(Diagnostic(
                    "E0014", Severity.ERROR, f"control character U+{ord(ch):04X} in string",
                    Span(self.file, token.line, col, token.line, col + 1), "not text",
                    "remove it; write `\\n` or `\\t` for a newline or a tab"))
                i += 1
            else:
                out.append(ch)
                i += 1
        return ast.String("".join(out), self.span(token))


def _is_control(ch: str) -> bool:
    """A control character other than tab: never text a recipe means."""
    return (ch < " " and ch != "\t") or ch == "\x7f"


class _Percent:
    def __init__(self, span: Span):
        self.span = span


def _number_value(text: str) -> int | float:
    clean = text.replace("_", "")
    try:
        if any(c in clean for c in ".eE"):
            return float(clean)
        return int(clean)
    except ValueError:
        return float("nan")
