" Vim syntax file for .ftspec recipes (ftc). The scopes follow the TextMate grammar of editors/vscode.
" Install: copy syntax/ and ftdetect/ into ~/.vim/ (or ~/.config/nvim/). For diagnostics, hover and
" completion, point an LSP client at `ftc lsp` (e.g. Neovim: vim.lsp.start({ cmd = { 'ftc', 'lsp' } })).
if exists("b:current_syntax")
  finish
endif

syn match   ftspecComment    "#.*$" contains=@Spell
syn region  ftspecString     start=+"+ skip=+\\.+ end=+"\|$+ contains=ftspecEscape
syn match   ftspecEscape     +\\["\\nt]+ contained
syn match   ftspecDirective  "^\s*\zs\(recipe\|extends\)\ze\>\(\s*=\)\@!"
syn match   ftspecBlock      "\<[A-Za-z_][A-Za-z0-9_-]*\ze\(\s\+\([A-Za-z_][A-Za-z0-9_-]*\|\"[^\"]*\"\)\)\=\s*{"
syn match   ftspecLabel      "\(\<[A-Za-z_][A-Za-z0-9_-]*\s\+\)\@<=[A-Za-z_][A-Za-z0-9_-]*\ze\s*{"
syn match   ftspecKey        "\<[A-Za-z_][A-Za-z0-9_-]*\(\.[A-Za-z_][A-Za-z0-9_-]*\)*\ze\s*="
syn match   ftspecNumber     "[+-]\=\<\d[0-9_]*\(\.\d*\)\=\([eE][+-]\=\d\+\)\="
syn match   ftspecUnit       "\(\d\s*\|)\s*\)\@<=\(%\|\(B\|KB\|MB\|GB\|TB\|KiB\|MiB\|GiB\|TiB\|steps\=\|epochs\=\|tokens\=\|rows\=\|s\|secs\=\|seconds\=\|mins\=\|minutes\=\|h\|hrs\=\|hours\=\|d\|days\=\)\>\)"
syn keyword ftspecAuto       auto
syn keyword ftspecBoolean    true false on off
syn keyword ftspecDirection  minimize maximize
syn keyword ftspecFunction   loguniform uniform int choice

hi def link ftspecComment   Comment
hi def link ftspecString    String
hi def link ftspecEscape    SpecialChar
hi def link ftspecDirective PreProc
hi def link ftspecBlock     Type
hi def link ftspecLabel     Tag
hi def link ftspecKey       Identifier
hi def link ftspecNumber    Number
hi def link ftspecUnit      Special
hi def link ftspecAuto      Constant
hi def link ftspecBoolean   Boolean
hi def link ftspecDirection Keyword
hi def link ftspecFunction  Function

let b:current_syntax = "ftspec"
