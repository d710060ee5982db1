"""The ``olmap`` command line: thin Typer wrappers that parse, call the library and report."""
