"""The `hotrec` command line: one module per subcommand."""
