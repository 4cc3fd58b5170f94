// Tokenise .ftspec files with the TextMate grammar of editors/vscode, as VS Code does (vscode-textmate +
// vscode-oniguruma), and print each token with its scopes: tests/test_editor_grammar.py compares the output
// with goldens. Usage: node tokenize.js GRAMMAR.json FILE...
"use strict";
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

async function main() {
  const [grammarPath, ...files] = process.argv.slice(2);
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm"));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async () => vsctm.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath),
  });
  const grammar = await registry.loadGrammar("source.ftspec");
  for (const file of files) {
    const out = [];
    let state = vsctm.INITIAL;
    fs.readFileSync(file, "utf8").split("\n").forEach((line, index) => {
      const result = grammar.tokenizeLine(line, state);
      for (const token of result.tokens) {
        const text = line.substring(token.startIndex, token.endIndex);
        if (!text.trim()) continue;
        const scopes = token.scopes.filter((s) => s !== "source.ftspec").join(" ");
        out.push(`${index + 1}:${token.startIndex + 1}\t${JSON.stringify(text)}\t${scopes || "-"}`);
      }
      state = result.ruleStack;
    });
    process.stdout.write(`== ${path.basename(file)}\n${out.join("\n")}\n`);
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
