"""A real LSP client session with `ftc lsp` over stdio (pygls' LanguageClient in this process, the server
in a subprocess): used by tests/test_lsp.py and bench/lsp_latency.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

TIMEOUT = 30.0


class Session:
    """Open documents, wait for their diagnostics, ask hover/completion/formatting/definition."""

    def __init__(self) -> None:
        self.client = LanguageClient("ftc-test", "1")
        self.diagnostics: dict[str, asyncio.Queue] = {}
        self.versions: dict[str, int] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _published(params: types.PublishDiagnosticsParams) -> None:
            self.queue(params.uri).put_nowait(params.diagnostics)

    def queue(self, uri: str) -> asyncio.Queue:
        return self.diagnostics.setdefault(uri, asyncio.Queue())

    async def start(self, cwd: Path) -> None:
        await self.client.start_io(sys.executable, "-m", "ftc", "lsp", cwd=str(cwd))
        await asyncio.wait_for(self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=from_fs_path(str(cwd)))), TIMEOUT)
        self.client.initialized(types.InitializedParams())

    async def stop(self) -> None:
        await asyncio.wait_for(self.client.shutdown_async(None), TIMEOUT)
        self.client.exit(None)
        await self.client.stop()

    async def next_diagnostics(self, uri: str) -> list[types.Diagnostic]:
        return await asyncio.wait_for(self.queue(uri).get(), TIMEOUT)

    def open(self, path: Path, text: str | None = None) -> str:
        uri = from_fs_path(str(path))
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
            uri=uri, language_id="ftspec", version=1, text=path.read_text() if text is None else text)))
        return uri

    def change(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            [types.TextDocumentContentChangeWholeDocument(text=text)]))

    async def hover(self, uri: str, line: int, character: int) -> str | None:
        result = await asyncio.wait_for(self.client.text_document_hover_async(types.HoverParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character))), TIMEOUT)
        return None if result is None else result.contents.value

    async def complete(self, uri: str, line: int, character: int) -> list[str]:
        result = await asyncio.wait_for(self.client.text_document_completion_async(types.CompletionParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character))), TIMEOUT)
        items = result.items if isinstance(result, types.CompletionList) else (result or [])
        return [item.label for item in items]

    async def format(self, uri: str) -> list[types.TextEdit] | None:
        return await asyncio.wait_for(self.client.text_document_formatting_async(types.DocumentFormattingParams(
            types.TextDocumentIdentifier(uri), types.FormattingOptions(tab_size=2, insert_spaces=True))), TIMEOUT)

    async def definition(self, uri: str, line: int, character: int):
        return await asyncio.wait_for(self.client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character))), TIMEOUT)


def position_of(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """(line, character) of the first `needle` in `text`, plus `offset` characters."""
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)
