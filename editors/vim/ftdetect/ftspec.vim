" .ftspec recipes (ftc)
autocmd BufNewFile,BufRead *.ftspec setfiletype ftspec
