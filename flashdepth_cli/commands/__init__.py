"""One module per subcommand (see ``flashdepth_cli.main.COMMANDS``)."""
