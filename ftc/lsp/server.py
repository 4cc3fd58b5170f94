"""The pygls server behind `ftc lsp`: diagnostics on open and change (debounced), hover, completion,
formatting (`ftc fmt`) and go-to-definition on `extends`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from ftc import __version__
from ftc.lsp.analysis import by_file, compile_buffers
from ftc.lsp.complete import completions
from ftc.lsp.hover import hover_markdown
from ftc.lsp.scan import context_at, offset_of

DEBOUNCE_S = 0.2  # a burst of keystrokes is compiled once, this long after the last


class FtcServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("ftc", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.compiled: dict[str, tuple[str, object]] = {}  # uri -> (text compiled, Compiled)
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.published: dict[str, set[str]] = {}  # root uri -> uris it published diagnostics to

    def buffers(self) -> dict[Path, str]:
        return {Path(to_fs_path(uri)): doc.source for uri, doc in self.workspace.text_documents.items()
                if to_fs_path(uri)}

    def analyse(self, uri: str):
        """Compile the document now (or reuse the compile of the same text) and publish its diagnostics."""
        text = self.workspace.get_text_document(uri).source
        cached = self.compiled.get(uri)
        if cached is not None and cached[0] == text:
            return cached[1]
        if not to_fs_path(uri):  # an untitled buffer: no folder for its relative paths, nothing to compile
            return None
        path = Path(to_fs_path(uri))
        compiled = compile_buffers(path, self.buffers())
        self.compiled[uri] = (text, compiled)
        root = Path(os.path.abspath(path))
        grouped = {uri if file == root else from_fs_path(str(file)): items
                   for file, items in by_file(root, compiled.diagnostics).items()}  # the root under the client's uri
        for stale in self.published.get(uri, set()) - set(grouped):
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=stale, diagnostics=[]))
        for target, items in grouped.items():
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=target, diagnostics=items))
        self.published[uri] = set(grouped)
        return compiled

    def schedule(self, uri: str) -> None:
        handle = self.pending.pop(uri, None)
        if handle is not None:
            handle.cancel()
        loop = asyncio.get_running_loop()
        self.pending[uri] = loop.call_later(DEBOUNCE_S, self._run_pending, uri)

    def _run_pending(self, uri: str) -> None:
        self.pending.pop(uri, None)
        if uri in self.workspace.text_documents:
            self.analyse(uri)

    def context(self, uri: str, position: types.Position):
        text = self.workspace.get_text_document(uri).source
        return context_at(text, offset_of(text, position.line, position.character))


server = FtcServer()


def warm_up() -> None:
    """Import the compile path now (lowering, the memory model) and build the parser, so that the first
    open is answered about as fast as the next ones."""
    import ftc.compiler.fmt  # noqa: F401
    import ftc.compiler.lower  # noqa: F401
    import ftc.compiler.memory.breakdown  # noqa: F401
    import ftc.compiler.memory.estimate  # noqa: F401
    import ftc.compiler.memory.report  # noqa: F401
    import ftc.compiler.pipeline  # noqa: F401
    from ftc.compiler.parse import parse_text

    parse_text("train {\n  lr = 1e-4\n}\n", "warm-up")


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: FtcServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.analyse(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: FtcServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: FtcServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: FtcServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.compiled.pop(uri, None)
    for target in ls.published.pop(uri, set()):
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=target, diagnostics=[]))


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: FtcServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    text = hover_markdown(ls.context(uri, params.position), ls.analyse(uri))
    if text is None:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=["=", " ", "{"]))
def complete(ls: FtcServer, params: types.CompletionParams) -> types.CompletionList:
    items = completions(ls.context(params.text_document.uri, params.position))
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: FtcServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    from ftc.compiler.fmt import format_recipe
    from ftc.compiler.parse import parse_text

    doc = ls.workspace.get_text_document(params.text_document.uri)
    recipe, diagnostics = parse_text(doc.source, doc.path or "recipe")
    if recipe is None or any(d.is_error for d in diagnostics):
        return None  # like `ftc fmt`: a file that does not parse is left as it is
    formatted = format_recipe(recipe, doc.source)
    if formatted == doc.source:
        return []
    lines = doc.source.split("\n")
    end = types.Position(len(lines) - 1, len(lines[-1]))
    return [types.TextEdit(range=types.Range(types.Position(0, 0), end), new_text=formatted)]


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: FtcServer, params: types.DefinitionParams) -> types.Location | None:
    ctx = ls.context(params.text_document.uri, params.position)
    statement = ctx.statement.strip()
    if ctx.blocks or ctx.first_word != "extends" or '"' not in statement:
        return None
    target = statement.split('"')[1]
    path = Path(to_fs_path(params.text_document.uri)).parent / target
    if not path.is_file():
        return None
    start = types.Position(0, 0)
    return types.Location(uri=from_fs_path(str(path.resolve())), range=types.Range(start, start))


def serve() -> None:
    warm_up()  # before reading stdin: the client's `initialize` waits for it, its first open does not
    server.start_io()
