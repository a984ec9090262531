"""The command line: Typer commands over the stage functions (parse → call → render)."""
