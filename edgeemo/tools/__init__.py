"""Developer and measurement tools behind the CLI (bench, eval, demo, model inspection) and the
helpers the tests share. The daemon never imports this package."""
