"""`ftc lsp`: the language server. It runs the compile path on the editor's buffers (never the training
stack), so what an editor shows is exactly what `ftc check` reports."""
