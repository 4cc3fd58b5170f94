// Starts `ftc lsp` (stdio) for .ftspec files. The server does the work: diagnostics, hover, completion,
// formatting and go-to-definition on `extends`.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("ftspec").get("server.path", "ftc");
  const server = { command, args: ["lsp"], transport: TransportKind.stdio };
  client = new LanguageClient("ftspec", "ftc language server", { run: server, debug: server }, {
    documentSelector: [{ scheme: "file", language: "ftspec" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
