"""The ``dtp-stereo`` command line: one module per subcommand."""
