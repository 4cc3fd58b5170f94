"""The compile path: parse, build, resolve, check, lower, emit. Imports no training library."""
